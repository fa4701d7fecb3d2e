"""Reading the field's formats, each from fixtures written by its own library: Lhotse manifests
and Shar (lhotse), WebDataset tars (webdataset), NeMo manifests (the documented JSON lines)."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
import webdataset as wds

from format_fixtures import tone, write_corpus
from s2s_media.cli.main import main
from s2s_media.config import load_config
from s2s_media.data.dataset import AudioDataset, Bad
from s2s_media.data.sources import read_source
from s2s_media.text.tokenizer import CharTokenizer
from s2s_media.data.lhotse_io import manifest_kind, scan_shar
from s2s_media.data.manifest import read_manifest
from s2s_media.data.preparers import PREPARERS
from s2s_media.data.shards import expand_shards, flac_bytes, scan_tar, write_shards
from s2s_media.errors import AudioError, UserError
from s2s_media.frontend.audio import load_audio


@pytest.fixture
def lhotse_cuts(tmp_path) -> CutSet:
    """Three 2 s recordings with two supervisions each, and one cut that starts 0.5 s into its
    recording (a windowed cut): its supervision offsets are relative to the cut."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(3):
        sf.write(tmp_path / f"rec{i}.wav", tone(2.0, 300 + 100 * i, rng), 16000)
        recs.append(Recording.from_file(tmp_path / f"rec{i}.wav"))
    sups = [SupervisionSegment(id=f"rec{i}-s{j}", recording_id=f"rec{i}", start=0.1 + 0.9 * j, duration=0.7,
                               text=f"word {['one', 'two'][j]}", speaker=f"spk{i}") for i in range(3) for j in range(2)]
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs),
                                 supervisions=SupervisionSet.from_segments(sups))
    windowed = cuts[2].truncate(offset=0.5, duration=1.5, keep_excessive_supervisions=False)
    return CutSet.from_cuts([cuts[0], cuts[1], windowed])


def test_prepare_lhotse_cuts_gives_one_utterance_per_supervision(lhotse_cuts, tmp_path):
    lhotse_cuts.to_file(tmp_path / "mycorpus_cuts_train.jsonl.gz")
    written = PREPARERS["lhotse"](tmp_path / "mycorpus_cuts_train.jsonl.gz", tmp_path / "out")
    assert list(written) == ["mycorpus_train"]
    records = {r.id: r for r in read_manifest(written["mycorpus_train"])}
    expected = {s.id: (cut, s) for cut in lhotse_cuts for s in cut.supervisions}
    assert set(records) == set(expected)
    for uid, (cut, sup) in expected.items():
        r = records[uid]
        assert r.offset == pytest.approx(cut.start + sup.start) and r.duration == pytest.approx(sup.duration)
        assert r.text == sup.text and r.speaker == sup.speaker
        # the samples are the ones lhotse itself reads for that supervision
        ours = r.load()
        theirs = cut.truncate(offset=sup.start, duration=sup.duration).load_audio()[0]
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert records["rec2-s1"].offset == pytest.approx(1.0)   # 0.5 s cut start + 0.5 s inside the cut


def test_prepare_lhotse_recordings_and_supervisions(lhotse_cuts, tmp_path):
    whole = [c for c in lhotse_cuts if c.start == 0]      # supervision times are recording times here
    RecordingSet.from_recordings(c.recording for c in whole).to_file(tmp_path / "recordings_dev.jsonl.gz")
    SupervisionSet.from_segments(s for c in whole for s in c.supervisions).to_file(
        tmp_path / "supervisions_dev.jsonl.gz")
    written = PREPARERS["lhotse"](tmp_path, tmp_path / "out")
    records = read_manifest(written["dev"])
    assert len(records) == 4
    assert sorted(r.offset for r in records) == pytest.approx([0.1, 0.1, 1.0, 1.0])


def test_prepare_lhotse_skips_and_counts_missing_audio(lhotse_cuts, tmp_path, caplog):
    lhotse_cuts.to_file(tmp_path / "cuts.jsonl.gz")
    (tmp_path / "rec1.wav").unlink()
    written = PREPARERS["lhotse"](tmp_path / "cuts.jsonl.gz", tmp_path / "out")
    assert len(read_manifest(written["all"])) == 3
    assert "rec1" in caplog.text and "not found" in caplog.text and "2 missing audio" in caplog.text


def test_lhotse_names_and_bad_sources(tmp_path):
    assert manifest_kind(Path("librispeech_cuts_dev-clean.jsonl.gz")) == ("cuts", "librispeech_dev-clean")
    assert manifest_kind(Path("cuts.jsonl.gz")) == ("cuts", "all")
    assert manifest_kind(Path("notes.txt")) is None
    with pytest.raises(UserError, match="no Lhotse manifest"):
        PREPARERS["lhotse"](tmp_path, tmp_path / "out")
    with pytest.raises(UserError, match="not a Lhotse Shar directory"):
        scan_shar(tmp_path / "nope")


def test_prepare_nemo(tmp_path, caplog):
    rows = write_corpus(tmp_path, 4)
    lines = [{"audio_filepath": f"wav/{Path(r['audio']).name}", "duration": r["duration"], "text": r["text"]}
             for r in rows]
    lines[1]["offset"] = 0.1
    lines[1]["duration"] = 0.3
    lines.append({"audio_filepath": "wav/utt000.wav", "duration": "long", "text": "x"})    # bad field
    lines.append({"audio_filepath": "wav/gone.wav", "duration": 1.0, "text": "x"})        # missing audio
    (tmp_path / "train_manifest.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    written = PREPARERS["nemo"](tmp_path / "train_manifest.json", tmp_path / "out")
    records = read_manifest(written["train"])
    assert [r.id for r in records] == ["utt000", "utt001-0000100", "utt002", "utt003"]
    seg = records[1]
    assert seg.offset == pytest.approx(0.1) and seg.duration == pytest.approx(0.3)
    np.testing.assert_allclose(seg.load(), load_audio(rows[1]["audio"])[1600:1600 + 4800], atol=1e-6)
    assert "train_manifest.json:5: field 'duration' has type str" in caplog.text
    assert "gone.wav not found" in caplog.text


def test_shar_written_by_lhotse_reads_like_lhotse(lhotse_cuts, tmp_path):
    shar = tmp_path / "shar"
    shar.mkdir()
    lhotse_cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=2)
    items = scan_shar(shar)
    assert [it.id for it in items] == [s.id for c in lhotse_cuts for s in c.supervisions]
    assert len({it.shard for it in items}) == 2
    theirs = {c.id: c for c in CutSet.from_shar(in_dir=shar)}
    for it in items:
        cut = theirs[it.key]
        sup = next(s for s in cut.supervisions if s.id == it.id)
        expected = cut.truncate(offset=sup.start, duration=sup.duration).load_audio()[0]
        got = it.load()
        assert len(got) == len(expected) and it.text == sup.text
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_webdataset_tars_written_by_webdataset(tmp_path):
    rng = np.random.default_rng(1)
    wav_bytes = []
    with wds.TarWriter(str(tmp_path / "data-000000.tar")) as w:
        for i in range(3):
            x = tone(0.8, 440, rng)
            wav_bytes.append(x)
            buf = io.BytesIO()
            sf.write(buf, x, 16000, format="WAV", subtype="FLOAT")
            sample = {"__key__": f"clip{i}", "wav": buf.getvalue()}
            if i == 2:
                sample["txt"] = "plain text member"        # transcript as a .txt member, no duration
            else:
                sample["json"] = {"text": f"clip {i}", "speaker": "a"}
            w.write(sample)
    with wds.TarWriter(str(tmp_path / "data-000001.tar")) as w:
        w.write({"__key__": "ours", "flac": flac_bytes(wav_bytes[0]), "json": {"id": "u.1", "text": "t", "duration": 0.8}})
    shards = expand_shards(str(tmp_path / "data-{000000..000001}.tar"))
    assert [p.name for p in shards] == ["data-000000.tar", "data-000001.tar"]
    items = scan_tar(shards[0]) + scan_tar(shards[1])
    assert [(it.id, it.text) for it in items] == [("clip0", "clip 0"), ("clip1", "clip 1"),
                                                   ("clip2", "plain text member"), ("u.1", "t")]
    assert all(it.problem is None and it.duration == pytest.approx(0.8) for it in items)
    np.testing.assert_array_equal(items[1].load(), wav_bytes[1])
    np.testing.assert_allclose(items[3].load(), wav_bytes[0], atol=1 / 32768)


def test_damaged_shards_name_shard_and_key(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "bad.tar"
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "good", "flac": flac_bytes(tone(0.5, 300, rng)), "json": {"text": "ok"}})
        w.write({"__key__": "noaudio", "json": {"text": "no audio here"}})
        w.write({"__key__": "badfield", "flac": flac_bytes(tone(0.5, 300, rng)), "json": {"text": 7}})
        w.write({"__key__": "baddur", "flac": flac_bytes(tone(0.5, 300, rng)), "json": {"text": "x", "duration": -1}})
        w.write({"__key__": "last", "flac": flac_bytes(tone(2.0, 300, rng)), "json": {"text": "cut off"}})
    items = {it.key: it for it in scan_tar(path)}
    assert items["good"].problem is None
    assert "bad.tar: key noaudio: no audio member" in items["noaudio"].problem
    assert "key badfield: field 'text' has type int" in items["badfield"].problem
    assert "key baddur: field 'duration'" in items["baddur"].problem
    # a tar cut off in the middle of its last FLAC: the earlier entries stay, the rest is one broken item
    data = path.read_bytes()
    with tarfile.open(path) as tf:
        last = next(m for m in tf if m.name == "last.flac")
    (tmp_path / "cut.tar").write_bytes(data[: last.offset_data + last.size // 2])
    cut = scan_tar(tmp_path / "cut.tar")
    assert [it.key for it in cut][:4] == ["good", "noaudio", "badfield", "baddur"]
    assert len(cut) == 5
    with pytest.raises(AudioError, match=r"cut.tar: key \(end\): truncated inside last.flac; the rest of this shard"):
        cut[-1].load()
    # the shard file shrinking after indexing: the read is short, and says where
    item = items["good"]
    (tmp_path / "bad.tar").write_bytes(data[: item.offset + 10])
    with pytest.raises(AudioError, match="bad.tar: key good: the shard is truncated"):
        item.load()


def test_shard_specs_say_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="holds no .tar shards"):
        expand_shards(str(tmp_path))
    with pytest.raises(UserError, match=r"shard .*x-000001.tar not found"):
        (tmp_path / "x-000000.tar").write_bytes(b"")
        expand_shards(str(tmp_path / "x-{000000..000001}.tar"))


def test_gzip_damage_in_a_shar_manifest_is_one_broken_item(lhotse_cuts, tmp_path):
    shar = tmp_path / "shar"
    shar.mkdir()
    lhotse_cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=10)
    manifest = shar / "cuts.000000.jsonl.gz"
    raw = gzip.decompress(manifest.read_bytes())
    manifest.write_bytes(gzip.compress(raw)[:-30])
    items = scan_shar(shar)
    assert any("cuts.000000.jsonl.gz is unreadable" in (it.problem or "") for it in items)


def test_shard_command_writes_tars_that_webdataset_reads(tmp_path, capsys):
    rows = write_corpus(tmp_path, 10, seed=4)
    rows[3]["id"] = "spk.3.utt"                                  # a dot would start the extension
    rows.append({"id": "gone", "audio": str(tmp_path / "gone.wav"), "text": "one", "duration": 1.0})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["shard", str(tmp_path / "m.jsonl"), str(tmp_path / "shards"), "--shard-seconds", "3",
                 "--workers", "2"])
    out = capsys.readouterr()
    assert code == 1 and "gone" in out.err and "1 skipped" in out.out     # the missing file is skipped, not fatal
    tars = expand_shards(str(tmp_path / "shards"))
    assert len(tars) >= 3 and not list((tmp_path / "shards").glob("*.tmp"))
    samples = list(wds.WebDataset([str(t) for t in tars], shardshuffle=False).decode())
    assert sorted(s["json"]["id"] for s in samples) == sorted(r["id"] for r in rows[:10])
    by_id = {r["id"]: r for r in rows}
    for s in samples:
        assert s["json"]["text"] == by_id[s["json"]["id"]]["text"] and "flac" in s
    ours = {it.id: it for t in tars for it in scan_tar(t)}
    np.testing.assert_allclose(ours["spk.3.utt"].load(), load_audio(rows[3]["audio"]), atol=1 / 32768)


def test_data_train_names_each_source_kind(lhotse_cuts, tmp_path):
    shar = tmp_path / "shar"
    shar.mkdir()
    lhotse_cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=2)
    rows = write_corpus(tmp_path / "c", 4)
    write_shards(read_manifest(tmp_path / "c/train.jsonl"), tmp_path / "tars", shard_seconds=2)
    kinds = {"shar": f"{{shar: {shar}}}", "shards": f"{{shards: '{tmp_path}/tars/shard-{{000000..000001}}.tar'}}",
             "jsonl": str(tmp_path / "c/train.jsonl")}
    found = {}
    for kind, value in kinds.items():
        cfg = load_config(None, [f"data.train={value}"])
        found[kind] = read_source(cfg.data.train)
    assert len(found["shar"]) == 5 and len(found["jsonl"]) == 4
    assert {it.id for it in found["shards"]} <= {r["id"] for r in rows} and len(found["shards"]) >= 2
    with pytest.raises(UserError, match="exactly one of jsonl, shards, shar"):
        load_config(None, [f"data.train={{shards: x, shar: {shar}}}"])


def test_a_broken_entry_becomes_a_counted_bad_item_naming_shard_and_key(tmp_path, tokenizer_chars):
    path = tmp_path / "s.tar"
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k1", "flac": flac_bytes(tone(0.5, 300, np.random.default_rng(0))), "json": {"text": 3}})
    ds = AudioDataset(scan_tar(path), tokenizer_chars)
    bad = ds[0]
    assert isinstance(bad, Bad) and bad.id == "k1" and f"{path}: key k1: field 'text'" in bad.reason


@pytest.fixture
def tokenizer_chars():
    return CharTokenizer.train(["one two three"])
