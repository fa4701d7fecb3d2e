"""JSONL manifests: validation with file:line errors, path resolution, atomic writes."""
from __future__ import annotations

import json

import pytest

from s2s_media.data.manifest import AudioRecord, read_manifest, write_jsonl, write_manifest
from s2s_media.errors import ManifestError

GOOD = {"id": "u1", "audio": "wav/u1.wav", "text": "hello world", "duration": 1.5}


def _write(path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def test_read_manifest_resolves_paths_and_optional_fields(tmp_path):
    sub = tmp_path / "data"
    sub.mkdir()
    absolute = str(tmp_path / "elsewhere" / "u2.flac")
    _write(sub / "m.jsonl", [GOOD,
                             {"id": "u2", "audio": absolute, "text": "a b", "duration": 2, "speaker": "s7",
                              "offset": 0.25}])
    a, b = read_manifest(sub / "m.jsonl")
    assert a == AudioRecord("u1", str(sub.resolve() / "wav/u1.wav"), "hello world", 1.5, None, None)
    assert b.audio == absolute and b.speaker == "s7" and b.offset == 0.25
    assert isinstance(b.duration, float) and b.duration == 2.0


def test_segment_at_offset_zero_reads_only_its_duration(tmp_path):
    """A Kaldi segment starting at 0.0 is a segment, not the whole recording."""
    import numpy as np
    import soundfile as sf
    sf.write(tmp_path / "rec.wav", np.zeros(16000 * 3, dtype=np.float32) + 0.1, 16000)
    whole = {"id": "w", "audio": "rec.wav", "text": "a", "duration": 3.0}
    seg = {"id": "s", "audio": "rec.wav", "text": "a", "duration": 1.0, "offset": 0.0}
    _write(tmp_path / "m.jsonl", [whole, seg])
    w, s = read_manifest(tmp_path / "m.jsonl")
    assert w.offset is None and s.offset == 0.0
    assert len(w.load()) == 48000 and len(s.load()) == 16000
    write_manifest(tmp_path / "out.jsonl", [w, s])
    assert read_manifest(tmp_path / "out.jsonl") == [w, s]      # offset 0.0 survives the round trip


def test_relative_manifest_path_resolves_against_its_folder(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d/m.jsonl", [GOOD])
    monkeypatch.chdir(tmp_path)
    (r,) = read_manifest("d/m.jsonl")
    assert r.audio == str(tmp_path.resolve() / "d/wav/u1.wav")


def test_blank_lines_are_skipped_and_line_numbers_count_them(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, ["", GOOD, "   ", {**GOOD, "id": "u2"}, ""])
    assert [r.id for r in read_manifest(path)] == ["u1", "u2"]
    _write(path, ["", GOOD, "", "{oops"])
    with pytest.raises(ManifestError, match=rf"{path}:4: "):
        read_manifest(path)


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ('["a", "list"]', "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ({k: v for k, v in GOOD.items() if k != "text"}, "missing field 'text'"),
    ({k: v for k, v in GOOD.items() if k != "duration"}, "missing field 'duration'"),
    ({**GOOD, "id": 7}, "field 'id' has type int"),
    ({**GOOD, "audio": None}, "field 'audio' has type NoneType"),
    ({**GOOD, "duration": "1.5"}, "field 'duration' has type str"),
    ({**GOOD, "duration": True}, "field 'duration' has type bool"),
    ({**GOOD, "duration": 0}, "'duration' must be > 0"),
    ({**GOOD, "duration": -1.0}, "'duration' must be > 0"),
    ('{"id": "u1", "audio": "a.wav", "text": "a", "duration": NaN}', "'duration' must be > 0"),
    ('{"id": "u1", "audio": "a.wav", "text": "a", "duration": Infinity}', "'duration' must be > 0"),
    ({**GOOD, "offset": -0.5}, "'offset' must be >= 0"),
    ({**GOOD, "speaker": 3}, "field 'speaker' has type int"),
    ({**GOOD, "offset": "0.5"}, "field 'offset' has type str"),
    ({**GOOD, "offset": True}, "field 'offset' has type bool"),
]


@pytest.mark.parametrize("line,reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_names_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "m.jsonl"
    _write(path, [GOOD, line])
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:2: ")
    assert reason in msg
    assert "\n" not in msg


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_manifest_round_trip(tmp_path):
    records = [AudioRecord("a", str(tmp_path / "a.wav"), "one two", 1.25),
               AudioRecord("b", str(tmp_path / "b.wav"), "héllo ünïcode", 3.0, speaker="spk", offset=0.5)]
    path = tmp_path / "out" / "m.jsonl"
    assert write_manifest(path, records) == 2
    assert read_manifest(path) == records
    first, second = (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines())
    assert "speaker" not in first and "offset" not in first  # defaults are omitted
    assert second["text"] == "héllo ünïcode"


def test_atomic_write_leaves_no_tmp_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")
    write_jsonl(path, [{"x": 1}, {"x": 2}])
    assert path.read_text() == '{"x": 1}\n{"x": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")

    def rows():
        yield {"x": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert path.read_text() == "old\n"
