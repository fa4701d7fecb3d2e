"""Dataset preparers and the ``prepare`` subcommand, on tiny corpora built like the real ones."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from fixtures_make import Corpus, make_commonvoice, make_kaldi, make_librispeech, write_tone  # noqa: E402

from s2s_media.cli import prepare as prepare_cli  # noqa: E402
from s2s_media.data.manifest import AudioRecord, read_manifest  # noqa: E402
from s2s_media.data.preparers import (PREPARERS, librispeech_split, prepare_commonvoice,  # noqa: E402
                                      prepare_kaldi, prepare_librispeech)
from s2s_media.errors import UserError  # noqa: E402
from s2s_media.text.normalize import normalize_text  # noqa: E402


def load(path: Path) -> dict[str, AudioRecord]:
    return {r.id: r for r in read_manifest(path)}


def raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_split(manifest: Path, corpus: Corpus, split: str, tol: float = 1e-3) -> None:
    """Every utterance of ``split`` is in the manifest with the right text, speaker, duration, offset."""
    records, expected = load(manifest), corpus.split(split)
    assert records.keys() == expected.keys()
    for utt_id, utt in expected.items():
        r = records[utt_id]
        assert r.text == normalize_text(utt.text)
        assert r.speaker == utt.speaker
        assert r.duration == pytest.approx(utt.duration, abs=tol)
        assert (r.offset or 0.0) == pytest.approx(utt.offset, abs=1e-6)
        assert Path(r.audio).is_file()


# --------------------------------------------------------------------------- LibriSpeech

def test_librispeech_splits_texts_speakers_durations(tmp_path):
    corpus = make_librispeech(tmp_path / "src")
    out = tmp_path / "out"
    paths = prepare_librispeech(corpus.root, out)
    assert paths == {s: out / f"{s}.jsonl" for s in ("train", "dev", "test")}
    check_split(paths["train"], corpus, "train-clean-100")
    check_split(paths["dev"], corpus, "dev-clean")
    check_split(paths["test"], corpus, "test-clean")
    first = raw_lines(paths["train"])[0]
    assert first["id"] == "100-1000-0000" and first["speaker"] == "100"
    assert Path(first["audio"]).is_absolute()
    assert "don't" in " ".join(r.text for r in load(paths["train"]).values())


def test_librispeech_accepts_the_librispeech_folder_itself(tmp_path):
    corpus = make_librispeech(tmp_path, ("dev-clean",))
    paths = prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "out")
    assert list(paths) == ["dev"]
    check_split(paths["dev"], corpus, "dev-clean")


def test_librispeech_all_training_subsets_and_other_sets(tmp_path):
    subsets = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
               "test-clean", "test-other")
    corpus = make_librispeech(tmp_path, subsets, speakers=1, utts=1)
    paths = prepare_librispeech(tmp_path, tmp_path / "out")
    assert set(paths) == {"train", "dev", "dev_other", "test", "test_other"}
    train = load(paths["train"])
    assert len(train) == 3
    assert {r.speaker for r in train.values()} == {"100", "200", "300"}
    check_split(paths["dev_other"], corpus, "dev-other")
    check_split(paths["test_other"], corpus, "test-other")


@pytest.mark.parametrize("subset, split", [("train-clean-100", "train"), ("train-other-500", "train"),
                                           ("dev-clean", "dev"), ("dev-other", "dev_other"),
                                           ("test-clean", "test"), ("test-other", "test_other")])
def test_librispeech_split_names(subset, split):
    assert librispeech_split(subset) == split


def test_librispeech_mismatches_are_counted_not_fatal(tmp_path, caplog):
    corpus = make_librispeech(tmp_path, ("dev-clean",), speakers=1, utts=3)
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "100" / "1000"
    (chapter / "100-1000-0001.flac").unlink()                       # transcript without audio
    trans = chapter / "100-1000.trans.txt"
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join([lines[0], lines[1], "100-1000-0002 ..."]) + "\n")   # empty after normalising
    write_tone(chapter / "100-1000-0009.flac", 0.3)                 # audio without transcript
    with caplog.at_level(logging.WARNING):
        paths = prepare_librispeech(tmp_path, tmp_path / "out")
    assert list(load(paths["dev"])) == ["100-1000-0000"]
    assert corpus.utts["100-1000-0000"].text.lower() == load(paths["dev"])["100-1000-0000"].text
    summary = caplog.messages[-1]
    assert "kept 1 utterances, skipped 3" in summary
    assert "1 transcripts without audio" in summary and "1 audio without transcript" in summary
    assert "1 empty transcripts" in summary


def test_librispeech_wrong_src(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare_librispeech(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no subset folders .*expected a LibriSpeech root"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "out")


# --------------------------------------------------------------------------- Common Voice

def test_commonvoice_reads_tsv_with_quotes_and_mp3_durations(tmp_path):
    corpus = make_commonvoice(tmp_path)
    paths = prepare_commonvoice(corpus.root, tmp_path / "out")
    assert set(paths) == {"train", "dev", "test"}
    for split in paths:
        check_split(paths[split], corpus, split, tol=0.03)
    texts = {r.text for split in paths for r in load(paths[split]).values()}
    assert "hello she said is anyone there" in texts
    assert "unbalanced quote at the start" in texts
    assert "numbers like forty two are spelled out" in texts
    assert all(Path(row["audio"]).is_absolute() and row["audio"].endswith(".mp3") for row in raw_lines(paths["train"]))


def test_commonvoice_release_folder_with_one_language(tmp_path):
    corpus = make_commonvoice(tmp_path, {"dev": 1})
    paths = prepare_commonvoice(corpus.root.parent, tmp_path / "out")
    assert list(paths) == ["dev"]


def test_commonvoice_convert_writes_relative_16k_flac(tmp_path):
    corpus = make_commonvoice(tmp_path, {"train": 2, "dev": 1, "test": 1})
    out = tmp_path / "out"
    paths = prepare_commonvoice(corpus.root, out, convert=True, workers=1)
    for split in paths:
        check_split(paths[split], corpus, split, tol=0.03)
    rows = raw_lines(paths["train"])
    assert [row["audio"] for row in rows] == [f"audio/{row['id']}.flac" for row in rows]
    info = sf.info(str(out / rows[0]["audio"]))
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    # the output folder is self-contained: moving it keeps the manifests valid
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    check_split(moved / "train.jsonl", corpus, "train", tol=0.03)
    # a second run reuses the converted files
    assert prepare_commonvoice(corpus.root, moved, convert=True, workers=1).keys() == paths.keys()


def test_commonvoice_missing_clip_and_bad_rows_are_counted(tmp_path, caplog):
    corpus = make_commonvoice(tmp_path, {"train": 3})
    first = next(iter(corpus.split("train")))
    (corpus.root / "clips" / f"{first}.mp3").unlink()
    last = list(corpus.split("train"))[-1]
    with open(corpus.root / "train.tsv", "a") as f:
        f.write("only\ttwo fields\n")
        f.write("\t".join(["", f"{last}.mp3", "s9", "...", "", "0", "0", "", "", "", "", "en", ""]) + "\n")
    with caplog.at_level(logging.WARNING):
        paths = prepare_commonvoice(corpus.root, tmp_path / "out", convert=True, workers=1)
    assert len(load(paths["train"])) == 2
    assert not (tmp_path / "out" / "audio" / f"{first}.flac").exists()
    assert "1 missing clips" in caplog.text and "1 malformed tsv rows" in caplog.text
    assert "1 empty transcripts" in caplog.text


def test_commonvoice_wrong_src(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare_commonvoice(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match=r"expected a Common Voice language folder with clips/\*\.mp3"):
        prepare_commonvoice(tmp_path / "x", tmp_path / "out")


def test_commonvoice_tsv_without_header_columns(tmp_path):
    corpus = make_commonvoice(tmp_path, {"train": 1})
    (corpus.root / "train.tsv").write_text("a\tb\nc\td\n")
    with pytest.raises(UserError, match="'path' and 'sentence'"):
        prepare_commonvoice(corpus.root, tmp_path / "out")


# --------------------------------------------------------------------------- Kaldi

def test_kaldi_splits_segments_speakers_and_relative_paths(tmp_path, monkeypatch):
    corpus = make_kaldi(tmp_path)
    monkeypatch.chdir(tmp_path)                       # relative paths must not depend on the cwd
    paths = prepare_kaldi(corpus.root, tmp_path / "out")
    assert set(paths) == {"train", "dev", "test"}
    for split in paths:
        check_split(paths[split], corpus, split)
    dev = load(paths["dev"])
    assert dev["spk0-rec0-1"].offset == pytest.approx(0.45)
    assert dev["spk0-rec0-1"].duration == pytest.approx(0.5)
    assert dev["spk1-rec1-1"].duration == pytest.approx(0.55)     # END = -1: to the end of the file
    assert "noise" not in load(paths["train"])["spk1-utt1"].text
    assert all(Path(row["audio"]).is_absolute() for split in paths for row in raw_lines(paths[split]))


def test_kaldi_relative_paths_from_the_recipe_dir(tmp_path, monkeypatch):
    corpus = make_kaldi(tmp_path)
    shutil.move(str(tmp_path / "s5" / "wav"), tmp_path / "elsewhere")
    (tmp_path / "s5" / "wav").mkdir()
    shutil.move(str(tmp_path / "elsewhere" / "spk0-utt0.wav"), tmp_path / "s5" / "wav")
    shutil.copytree(tmp_path / "elsewhere", tmp_path / "run" / "wav")
    monkeypatch.chdir(tmp_path / "run")               # Kaldi convention: cwd (the recipe dir) first
    records = load(prepare_kaldi(corpus.root / "train", tmp_path / "out")["train"])
    assert Path(records["spk0-utt0"].audio) == tmp_path / "s5" / "wav" / "spk0-utt0.wav"
    assert Path(records["spk1-utt1"].audio) == tmp_path / "run" / "wav" / "spk1-utt1.wav"


def test_kaldi_rejects_pipe_entries_with_a_clear_message(tmp_path, caplog):
    corpus = make_kaldi(tmp_path)
    train = corpus.root / "train"
    with open(train / "wav.scp", "a") as f:
        f.write("piped1 sph2pipe -f wav -p -c 1 /corpora/a.sph |\n")
        f.write("piped2 sox /corpora/b.flac -t wav - |\n")
    with open(train / "text", "a") as f:
        f.write("piped1 SOME WORDS\npiped2 MORE WORDS\n")
    with caplog.at_level(logging.WARNING):
        paths = prepare_kaldi(corpus.root, tmp_path / "out")
    assert len(load(paths["train"])) == 3
    pipe_lines = [m for m in caplog.messages if "pipe command" in m]
    assert len(pipe_lines) == 2 and all("\n" not in m for m in pipe_lines)
    assert "wav.scp:4: recording piped1 is a pipe command" in pipe_lines[0]
    assert "sph2pipe -f wav -p -c 1 /corpora/a.sph > piped1.wav" in pipe_lines[0]
    assert "2 pipe entries rejected" in caplog.messages[-1]
    assert "transcripts without audio" not in caplog.messages[-1]


def test_kaldi_all_pipes_is_an_error(tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("a sph2pipe -f wav a.sph |\n")
    (data / "text").write_text("a HELLO\n")
    with pytest.raises(UserError, match="no usable utterances found.*1 entries skipped"):
        prepare_kaldi(tmp_path / "data", tmp_path / "out")


def test_kaldi_single_data_dir_and_valid_alias(tmp_path):
    corpus = make_kaldi(tmp_path)
    data = corpus.root
    paths = prepare_kaldi(data / "test", tmp_path / "out1")
    assert paths == {"test": tmp_path / "out1" / "test.jsonl"}
    (data / "dev").rename(data / "my_eval_set")
    paths = prepare_kaldi(data / "my_eval_set", tmp_path / "out2")
    assert list(paths) == ["my_eval_set"] and len(load(paths["my_eval_set"])) == 4
    (data / "my_eval_set").rename(data / "valid")
    assert set(prepare_kaldi(data, tmp_path / "out3")) == {"train", "dev", "test"}


def test_kaldi_bad_and_overlong_segments(tmp_path, caplog):
    corpus = make_kaldi(tmp_path)
    dev = corpus.root / "dev"
    with open(dev / "segments", "a") as f:
        f.write("bad1 rec0 0.5 0.2\nbad2 rec0 abc 1.0\nlong rec0 0.2 3.0\nnorec recX 0.0 0.5\n")
    with open(dev / "text", "a") as f:
        f.write("bad1 A\nbad2 B\nlong C\nnorec D\n")
    with caplog.at_level(logging.WARNING):
        records = load(prepare_kaldi(corpus.root, tmp_path / "out")["dev"])
    assert len(records) == 4
    summary = caplog.messages[-1]
    assert "2 bad segments" in summary and "1 segments past the end of the audio" in summary
    assert "1 segments without recording" in summary


def test_kaldi_wrong_src(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare_kaldi(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "data" / "lang").mkdir(parents=True)
    with pytest.raises(UserError, match=r"expected a Kaldi data dir \(wav.scp \+ text"):
        prepare_kaldi(tmp_path / "data", tmp_path / "out")


# --------------------------------------------------------------------------- synthetic

@pytest.fixture
def fake_synthetic(monkeypatch, tmp_path):
    """Replace the synthetic generator by a recorder that writes one-line manifests."""
    calls = []

    def generate_corpus(text_source, out_dir, **options):
        calls.append((text_source, Path(out_dir), options))
        wav = write_tone(Path(out_dir) / "audio" / "a.wav", 0.3)
        paths = {}
        for split in ("train", "dev", "test"):
            paths[split] = Path(out_dir) / f"{split}.jsonl"
            paths[split].write_text(json.dumps({"id": "a", "audio": "audio/a.wav", "text": "hi", "duration": wav}) + "\n")
        return paths

    from s2s_media.data import synthetic_speech
    monkeypatch.setattr(synthetic_speech, "generate_corpus", generate_corpus)
    return calls


def test_synthetic_delegates_given_options_only(tmp_path, fake_synthetic):
    paths = PREPARERS["synthetic"](Path("fortunes"), tmp_path / "out", hours=0.5, seed=3)
    assert set(paths) == {"train", "dev", "test"}
    assert fake_synthetic == [("fortunes", tmp_path / "out", {"hours": 0.5, "seed": 3})]


def test_synthetic_missing_text_file(tmp_path):
    with pytest.raises(UserError, match=r"missing.txt: text source not found; pass 'fortunes', 'wordnet'"):
        PREPARERS["synthetic"](tmp_path / "missing.txt", tmp_path / "out")
    with pytest.raises(UserError, match=r"^nope.txt: text source not found"):     # one missing part of a sum
        PREPARERS["synthetic"](Path("fortunes+nope.txt"), tmp_path / "out")


# --------------------------------------------------------------------------- CLI

def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s-media")
    prepare_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_prepare_librispeech_prints_summary(tmp_path, capsys):
    make_librispeech(tmp_path / "src", speakers=1, utts=2)
    args = cli_parser().parse_args(["prepare", "librispeech", str(tmp_path / "src"), str(tmp_path / "out")])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "prepared librispeech" in out
    for split in ("train", "dev", "test"):
        assert (tmp_path / "out" / f"{split}.jsonl").is_file()
        line = next(line for line in out.splitlines() if line.split()[:1] == [split])
        assert line.split()[1] == "2"
    assert out.splitlines()[-1].split()[:2] == ["total", "6"]


def test_cli_passes_synthetic_options(tmp_path, capsys, fake_synthetic):
    args = cli_parser().parse_args(["prepare", "synthetic", "fortunes", str(tmp_path / "out"), "--hours", "0.1",
                                    "--dev-utts", "5", "--test-utts", "6", "--seed", "1", "--workers", "1",
                                    "--min-words", "2", "--max-words", "4"])
    assert prepare_cli.run(args) == 0
    assert fake_synthetic[0][2] == dict(hours=0.1, dev_utts=5, test_utts=6, seed=1, workers=1, min_words=2, max_words=4)
    assert "total" in capsys.readouterr().out


def test_cli_rejects_options_that_do_not_apply(tmp_path):
    args = cli_parser().parse_args(["prepare", "librispeech", str(tmp_path), str(tmp_path / "out"), "--convert"])
    with pytest.raises(UserError, match="--convert does not apply to 'librispeech' .it takes: no options"):
        prepare_cli.run(args)
    args = cli_parser().parse_args(["prepare", "synthetic", "fortunes", str(tmp_path / "out"),
                                    "--min-words", "5", "--max-words", "2"])
    with pytest.raises(UserError, match="--min-words 5 is larger than --max-words 2"):
        prepare_cli.run(args)


def test_cli_missing_src_is_a_user_error(tmp_path):
    args = cli_parser().parse_args(["prepare", "kaldi", str(tmp_path / "nope"), str(tmp_path / "out")])
    with pytest.raises(UserError, match="SRC .*nope does not exist"):
        prepare_cli.run(args)


def test_cli_help_describes_every_layout(capsys):
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["prepare", "--help"])
    text = capsys.readouterr().out
    for needle in ("SPEAKER-CHAPTER.trans.txt", "clips/*.mp3", "wav.scp", "segments", "fortunes", "--convert",
                   "dev_other.jsonl", "--workers"):
        assert needle in text


@pytest.mark.parametrize("bad", [["--hours", "-0.5"], ["--workers", "0"], ["--workers", "-1"], ["--dev-utts", "x"]])
def test_cli_rejects_bad_numbers(tmp_path, bad, capsys):
    with pytest.raises(SystemExit):
        cli_parser().parse_args(["prepare", "synthetic", "fortunes", str(tmp_path), *bad])
