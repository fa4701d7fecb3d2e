"""Output writers: formats, subtitle cue rules, resume bookkeeping and shard merging."""
from __future__ import annotations

import json
import re

import pytest

from s2s_media.errors import UserError
from s2s_media.inference.sharding import merge_outputs, rank_path
from s2s_media.inference.writers import CueRules, format_subtitles, infer_format, make_cues, open_writer, wrap_lines

WORDS = "the quick brown fox jumps over the lazy dog while seven wizards quietly hex an odd jukebox".split()


def record(path: str = "a.wav", n_words: int = len(WORDS), step: float = 0.4, pause_after: int = -1) -> dict:
    words, t = [], 0.5
    for i in range(n_words):
        words.append({"word": WORDS[i % len(WORDS)], "start": round(t, 3), "end": round(t + 0.3, 3), "confidence": 0.9})
        t += step + (2.0 if i == pause_after else 0.0)
    text = " ".join(w["word"] for w in words)
    return {"path": path, "text": text, "duration": round(t + 1, 3), "words": words,
            "segments": [{"start": 0.0, "end": round(t + 1, 3), "text": text}]}


ERROR = {"path": "bad.wav", "error": "bad.wav: audio file is empty (0 bytes); regenerate or remove it"}


def test_format_comes_from_the_flag_then_the_extension():
    assert infer_format(None, None) == "jsonl"
    assert infer_format("x.srt", "tsv") == "tsv"
    assert infer_format("out/x.VTT", None) == "vtt"
    assert infer_format("x.txt.rank3", None) == "txt"
    with pytest.raises(UserError, match="cannot tell the format"):
        infer_format("x.docx", None)


def test_lines_are_balanced_and_short():
    assert wrap_lines(["a", "b"], 42) == ["a b"]
    lines = wrap_lines(WORDS[:9], 42)
    assert len(lines) == 2 and all(len(x) <= 42 for x in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 8


def test_cues_respect_length_duration_and_pauses():
    rules = CueRules()
    rec = record(n_words=60, pause_after=10)
    cues = make_cues(rec, rules)
    assert sum(len(" ".join(c.lines).split()) for c in cues) == 60           # every word, once
    for c in cues:
        assert len(c.lines) <= rules.max_lines and all(len(x) <= rules.max_chars for x in c.lines)
        assert c.end - c.start <= rules.max_cue_s + 1e-6 and c.end > c.start
    assert all(a.end <= b.start + 1e-6 for a, b in zip(cues, cues[1:]))     # no overlap
    # the pause after word 11 ends a cue
    starts = [c.start for c in cues]
    assert rec["words"][11]["start"] in starts


def test_srt_and_vtt_text():
    rec = record(n_words=3)
    srt = format_subtitles(rec, "srt")
    assert srt.startswith("1\n00:00:00,500 --> 00:00:")
    assert "the quick brown" in srt
    vtt = format_subtitles(rec, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> ")
    assert re.search(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", srt)
    hour = {**rec, "words": [{"word": "late", "start": 3725.25, "end": 3725.5, "confidence": 1.0}]}
    assert "01:02:05,250 --> " in format_subtitles(hour, "srt")


def test_jsonl_appends_flushes_and_resumes(tmp_path):
    out = tmp_path / "out.jsonl"
    w = open_writer(out, "jsonl", n_inputs=3)
    w.write(record("a.wav"))
    assert json.loads(out.read_text())["path"] == "a.wav"                   # flushed before close
    w.write(ERROR)
    w.close()
    with pytest.raises(UserError, match="--resume"):
        open_writer(out, "jsonl", 3)
    with open(out, "a") as f:                                              # a crash mid-line
        f.write('{"path": "c.wa')
    w = open_writer(out, "jsonl", 3, resume=True)
    assert w.done() == {"a.wav", "bad.wav"}
    w.write(record("c.wav"))
    w.close()
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == ["a.wav", "bad.wav", "c.wav"]


def test_manifest_entries_are_keyed_by_id(tmp_path):
    out = tmp_path / "out.jsonl"
    w = open_writer(out, "jsonl", 2)
    w.write({**record("long.wav"), "id": "utt1"})
    w.close()
    assert open_writer(out, "jsonl", 2, resume=True).done() == {"long.wav\tutt1"}


def test_txt_and_tsv_keep_errors_in_the_done_list(tmp_path):
    for fmt in ("txt", "tsv"):
        out = tmp_path / f"out.{fmt}"
        w = open_writer(out, fmt, 2)
        w.write(record("a.wav", n_words=3))
        w.write(ERROR)
        w.close()
        body = out.read_text()
        assert "bad.wav" not in body and "the quick brown" in body
        done = [json.loads(x) for x in (tmp_path / f"out.{fmt}.done.jsonl").read_text().splitlines()]
        assert done == [{"path": "a.wav"}, ERROR]
        assert open_writer(out, fmt, 2, resume=True).done() == {"a.wav", "bad.wav"}
    assert (tmp_path / "out.tsv").read_text().splitlines()[:2] == ["path\tstart\tend\ttext",
                                                                   "a.wav\t0.000\t2.700\tthe quick brown"]
    assert (tmp_path / "out.txt").read_text() == "a.wav\nthe quick brown\n\n"


def test_subtitles_one_file_or_a_folder(tmp_path):
    w = open_writer(tmp_path / "one.srt", "srt", n_inputs=1)
    w.write(record("a.wav", n_words=3))
    w.close()
    assert (tmp_path / "one.srt").read_text().startswith("1\n")
    with pytest.raises(UserError, match="folder"):
        open_writer(tmp_path / "many.srt", "srt", n_inputs=2)
    with pytest.raises(UserError, match="--out FOLDER"):
        open_writer(None, "vtt", n_inputs=2)
    w = open_writer(tmp_path / "subs", "vtt", n_inputs=2)
    w.write(record("x/a.wav", n_words=3), "sub/a")
    w.write(ERROR, "bad")
    w.close()
    assert (tmp_path / "subs/sub/a.vtt").read_text().startswith("WEBVTT")
    assert not (tmp_path / "subs/bad.vtt").exists()
    assert open_writer(tmp_path / "subs", "vtt", 2, resume=True).done() == {"x/a.wav", "bad.wav"}


def test_stdout_cannot_be_resumed():
    with pytest.raises(UserError, match="stdout"):
        open_writer(None, "jsonl", 1, resume=True)


def test_merge_shards(tmp_path):
    out = tmp_path / "all.jsonl"
    for rank, paths in enumerate([["c.wav", "a.wav"], ["b.wav"]]):
        w = open_writer(rank_path(out, rank), "jsonl", 3)
        for p in paths:
            w.write(record(p, n_words=2))
        w.close()
    assert merge_outputs(sorted(str(p) for p in tmp_path.glob("all.jsonl.rank*")), out, "jsonl") == 2
    assert [json.loads(x)["path"] for x in out.read_text().splitlines()] == ["a.wav", "b.wav", "c.wav"]

    tsv = tmp_path / "all.tsv"
    for rank, p in enumerate(["a.wav", "b.wav"]):
        w = open_writer(rank_path(tsv, rank), "tsv", 2)
        w.write(record(p, n_words=2))
        w.close()
    merge_outputs([rank_path(tsv, 0), rank_path(tsv, 1), f"{tsv}.rank0.done.jsonl"], tsv, "tsv")
    lines = tsv.read_text().splitlines()
    assert lines[0].startswith("path") and len(lines) == 3 and sum(x.startswith("path") for x in lines) == 1
    assert len((tmp_path / "all.tsv.done.jsonl").read_text().splitlines()) == 2

    subs = tmp_path / "subs"
    for rank, p in enumerate(["a.wav", "b.wav"]):
        w = open_writer(rank_path(subs, rank), "srt", 2)
        w.write(record(p, n_words=2), p[0])
        w.close()
    merge_outputs([rank_path(subs, 0), rank_path(subs, 1)], subs, "srt")
    assert sorted(f.name for f in subs.iterdir()) == ["a.srt", "b.srt", "done.jsonl"]
    with pytest.raises(UserError, match="rank"):
        merge_outputs([tmp_path / "nothing.jsonl"], out, "jsonl")
