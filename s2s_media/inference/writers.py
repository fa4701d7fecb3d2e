"""Writers for output records: jsonl, txt, tsv, srt and vtt (transcripts), csv (any flat record).

A record is ``{"path", "text", "duration", "words": [{"word", "start", "end", "confidence"}],
"segments": [{"start", "end", "text"}]}`` (plus ``"id"`` for manifest entries), or an error
record ``{"path", "error"}``. Every writer appends one record at a time and flushes it, so a
crash keeps everything already written.

Formats:

- ``jsonl``: one record per line, error records included. The file itself is the list of what
  is done: ``--resume`` skips every path (and manifest ``id``) it holds, failed ones included
  (delete a line to retry that file). A line cut short by a crash is dropped on resume.
- ``txt``: per file a block: the path, the transcript, a blank line.
- ``tsv``: one row per segment: ``path  start  end  text`` (seconds), with a header.
- ``csv``: one row per record with fixed columns and a header (``s2s-media caption`` writes
  ``path,caption,score,error``); error records are rows too, with only ``path`` and ``error``.
- ``srt`` / ``vtt``: subtitles of one recording. With one input, ``OUT`` is the subtitle file;
  with several, ``OUT`` is a folder and each input gets ``OUT/<name>.srt``, ``<name>`` being
  its path relative to the folder it was found in (the file name for files given directly).
  Each subtitle file is written whole (temp file, then rename). Cues follow broadcast practice:
  at most ``max_lines`` lines of ``max_chars`` characters and ``max_cue_s`` seconds, and a new
  cue after a pause of ``max_pause_s``; they are built from the word timestamps.

Paths are recorded as given on the command line (folder contents joined to the folder as given;
manifest audio resolved against the manifest), so resume from the same folder with the same
arguments.

For every format but jsonl a sidecar ``OUT.done.jsonl`` (``OUT/done.jsonl`` for a subtitle
folder) lists ``{"path", "id"?, "error"?}`` per finished input, errors included: that is where
the error records of those formats go, and what ``--resume`` reads. Output on stdout cannot be
resumed.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Sequence

from s2s_media.errors import UserError

FORMATS = ("jsonl", "txt", "srt", "vtt", "tsv")   # what ``transcribe`` writes; ``csv`` needs columns
SUBTITLES = ("srt", "vtt")
_RANK_PART = re.compile(r"\.rank\d+$")


def record_key(path: str, id: str | None = None) -> str:
    """The identity of one input: its path, plus the manifest id for manifest entries."""
    return path if id is None else f"{path}\t{id}"


def key_of(record: dict) -> str:
    return record_key(record["path"], record.get("id"))


def infer_format(out: str | None, fmt: str | None, formats: Sequence[str] = FORMATS) -> str:
    """``--format`` if given, else from ``--out``'s extension (a rank suffix ignored), else jsonl.

    ``formats``: the formats the command writes (the transcription formats by default).
    """
    if fmt:
        if fmt not in formats:
            raise UserError(f"--format {fmt}: unknown; choose from {', '.join(formats)}")
        return fmt
    if not out:
        return "jsonl"
    ext = Path(_RANK_PART.sub("", str(out))).suffix.lstrip(".").lower()
    if ext in formats:
        return ext
    if ext == "json":
        return "jsonl"
    if not ext and (Path(out).is_dir() or str(out).endswith(os.sep)) and set(SUBTITLES) & set(formats):
        raise UserError(f"--out {out}: a folder needs --format srt or vtt (one subtitle file per input)")
    raise UserError(f"--out {out}: cannot tell the format from the extension '.{ext}'; "
                    f"add --format ({', '.join(formats)})")


# --------------------------------------------------------------------------- cues
@dataclass(frozen=True)
class CueRules:
    max_chars: int = 42       # characters per line
    max_lines: int = 2
    max_cue_s: float = 7.0    # longest cue on screen
    max_pause_s: float = 1.0  # a longer pause between words starts a new cue
    min_cue_s: float = 1.0    # a short cue stays up this long (unless the next one starts)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def wrap_lines(words: list[str], max_chars: int) -> list[str]:
    """Split words into the fewest lines of at most ``max_chars``, two lines balanced in length."""
    text = " ".join(words)
    if len(text) <= max_chars:
        return [text]
    best = None
    for i in range(1, len(words)):  # two lines: the most even split that fits
        a, b = " ".join(words[:i]), " ".join(words[i:])
        if len(a) <= max_chars and len(b) <= max_chars and (best is None or max(len(a), len(b)) < best[0]):
            best = (max(len(a), len(b)), [a, b])
    if best:
        return best[1]
    lines, cur = [], ""
    for w in words:  # more lines (or a word longer than a line): greedy
        if cur and len(cur) + 1 + len(w) > max_chars:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return lines + [cur]


def make_cues(record: dict, rules: CueRules = CueRules()) -> list[Cue]:
    """Cues for one record from its word timestamps (its segments when it has no words)."""
    words = record.get("words") or []
    if not words:
        return [Cue(s["start"], s["end"], tuple(wrap_lines(s["text"].split(), rules.max_chars)))
                for s in record.get("segments", []) if s["text"]]
    groups: list[list[dict]] = []
    for w in words:
        if groups:
            g = groups[-1]
            fits = len(wrap_lines([x["word"] for x in g] + [w["word"]], rules.max_chars)) <= rules.max_lines
            if (fits and w["end"] - g[0]["start"] <= rules.max_cue_s
                    and w["start"] - g[-1]["end"] <= rules.max_pause_s):
                g.append(w)
                continue
        groups.append([w])
    cues = []
    limit = record.get("duration") or float("inf")
    for i, g in enumerate(groups):
        start = g[0]["start"]
        nxt = groups[i + 1][0]["start"] if i + 1 < len(groups) else limit
        end = min(max(g[-1]["end"], start + rules.min_cue_s), max(nxt, g[-1]["end"]), start + rules.max_cue_s)
        cues.append(Cue(start, max(end, g[-1]["end"]), tuple(wrap_lines([x["word"] for x in g], rules.max_chars))))
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_subtitles(record: dict, fmt: str, rules: CueRules = CueRules()) -> str:
    """The whole SRT or WebVTT text of one record."""
    cues = make_cues(record, rules)
    if fmt == "srt":
        return "".join(f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
                       for i, c in enumerate(cues, 1))
    return "WEBVTT\n\n" + "".join(f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n" + "\n".join(c.lines) + "\n\n"
                                  for c in cues)


# --------------------------------------------------------------------------- writers
class Writer(Protocol):
    def write(self, record: dict, name: str = "") -> None:
        """Append one record; ``name`` is the input's relative name (used by subtitle folders)."""

    def done(self) -> set[str]:
        """Keys (:func:`record_key`) of the inputs already in the output, for ``--resume``."""

    def close(self) -> None: ...


def _read_done(path: Path) -> set[str]:
    """Keys of the records of a jsonl file. A last line cut short by a crash is cut off the file;
    a complete line that does not parse is skipped."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    keys = set()
    for line in data.splitlines():
        try:
            keys.add(key_of(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return keys


def _open_append(path: Path, resume: bool) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume and path.exists() and path.stat().st_size:
        raise UserError(f"{path}: already exists; pass --resume to continue it, or choose another --out")
    return open(path, "a", encoding="utf-8")


class _StreamWriter:
    """Shared by jsonl, txt and tsv: append text to OUT (or stdout), flush after every record."""

    def __init__(self, path: Path | None, resume: bool, sidecar: bool):
        self.path = path
        if path is None:
            if resume:
                raise UserError("--resume needs --out: output on stdout cannot be resumed")
            self.f, self.side = sys.stdout, None
            return
        self.side_path = Path(f"{path}.done.jsonl") if sidecar else None
        self._done = _read_done(self.side_path if sidecar else path) if resume else set()
        self.f = _open_append(path, resume)
        self.side = open(self.side_path, "a" if resume else "w", encoding="utf-8") if sidecar else None
        self.fresh = self.f.tell() == 0

    def done(self) -> set[str]:
        return set(self._done) if self.path is not None else set()

    def _mark(self, record: dict) -> None:
        if self.side is not None:
            row = {k: record[k] for k in ("path", "id", "error") if k in record}
            self.side.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.side.flush()

    def close(self) -> None:
        if self.f is not sys.stdout:
            self.f.close()
        else:
            self.f.flush()
        if self.side is not None:
            self.side.close()


class JsonlWriter(_StreamWriter):
    def __init__(self, path: Path | None, resume: bool = False):
        super().__init__(path, resume, sidecar=False)

    def write(self, record: dict, name: str = "") -> None:
        self.f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.f.flush()


class TxtWriter(_StreamWriter):
    def __init__(self, path: Path | None, resume: bool = False):
        super().__init__(path, resume, sidecar=True)

    def write(self, record: dict, name: str = "") -> None:
        if "error" not in record:
            self.f.write(f"{record['path']}\n{record['text']}\n\n")
            self.f.flush()
        self._mark(record)


class TsvWriter(_StreamWriter):
    HEADER = "path\tstart\tend\ttext\n"

    def __init__(self, path: Path | None, resume: bool = False):
        super().__init__(path, resume, sidecar=True)
        if self.path is None or self.fresh:
            self.f.write(self.HEADER)

    def write(self, record: dict, name: str = "") -> None:
        if "error" not in record:
            clean = record["path"].replace("\t", " ")
            for s in record["segments"]:
                self.f.write(f"{clean}\t{s['start']:.3f}\t{s['end']:.3f}\t{s['text']}\n")
            self.f.flush()
        self._mark(record)


class CsvWriter(_StreamWriter):
    """One row per record in ``columns`` order (a missing field is empty), with a header row.

    Error records are rows as well (their ``error`` column set, when there is one); the done
    list for ``--resume`` is the sidecar, as for txt and tsv.
    """

    def __init__(self, path: Path | None, resume: bool = False, columns: Sequence[str] = ("path", "error")):
        super().__init__(path, resume, sidecar=True)
        self.columns = list(columns)
        self.csv = csv.DictWriter(self.f, self.columns, extrasaction="ignore", lineterminator="\n")
        if self.path is None or self.fresh:
            self.csv.writeheader()

    def write(self, record: dict, name: str = "") -> None:
        if "error" not in record or "error" in self.columns:
            self.csv.writerow(record)
            self.f.flush()
        self._mark(record)


def read_records(path: str | Path, fmt: str) -> list[dict]:
    """The records of a jsonl or csv output file (csv: the columns as strings, empty ones left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
        if fmt != "jsonl":
            raise ValueError(f"read_records: {fmt} output holds no whole records")
        rows = []
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SubtitleWriter:
    """SRT/VTT: one file (``folder=False``; stdout when ``path`` is None) or a folder of files."""

    def __init__(self, path: Path | None, fmt: str, folder: bool, resume: bool = False,
                 rules: CueRules = CueRules()):
        self.path, self.fmt, self.folder, self.rules = path, fmt, folder, rules
        self.side = None
        self._done: set[str] = set()
        if path is None:
            if resume:
                raise UserError("--resume needs --out: output on stdout cannot be resumed")
            return
        if folder:
            if path.exists() and not path.is_dir():
                raise UserError(f"--out {path}: is a file, but several inputs write one subtitle file each "
                                "into a folder; give a folder name")
            path.mkdir(parents=True, exist_ok=True)
            side = path / "done.jsonl"
            if not resume and side.exists() and side.stat().st_size:
                raise UserError(f"--out {path}: an earlier run wrote into this folder; pass --resume to "
                                "continue it, or choose another --out")
        else:
            side = Path(f"{path}.done.jsonl")
            if not resume and path.exists():
                raise UserError(f"{path}: already exists; pass --resume to continue it, or choose another --out")
        if resume:
            self._done = _read_done(side)
        self.side = open(side, "a" if resume else "w", encoding="utf-8")

    def done(self) -> set[str]:
        return set(self._done)

    def write(self, record: dict, name: str = "") -> None:
        if "error" not in record:
            text = format_subtitles(record, self.fmt, self.rules)
            if self.path is None:
                sys.stdout.write(text)
                sys.stdout.flush()
            elif self.folder:
                _write_atomic(self.path / f"{name or Path(record['path']).name}.{self.fmt}", text)
            else:
                _write_atomic(self.path, text)
        if self.side is not None:
            row = {k: record[k] for k in ("path", "id", "error") if k in record}
            self.side.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.side.flush()

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def open_writer(out: str | Path | None, fmt: str, n_inputs: int, resume: bool = False,
                columns: Sequence[str] | None = None) -> Writer:
    """The writer for ``fmt`` at ``out`` (None = stdout). ``n_inputs`` decides a subtitle file vs folder;
    ``columns`` are the csv columns (csv only)."""
    path = Path(out) if out else None
    if fmt == "csv":
        if not columns:
            raise ValueError("open_writer: csv output needs its columns")
        return CsvWriter(path, resume, columns)
    if fmt in SUBTITLES:
        if path is None:
            if n_inputs > 1:
                raise UserError(f"--format {fmt} with several inputs writes one subtitle file per input: "
                                f"give --out FOLDER")
            return SubtitleWriter(None, fmt, False, resume)
        base = Path(_RANK_PART.sub("", str(path)))
        folder = n_inputs > 1 or path.is_dir() or not base.suffix
        if folder and base.suffix == f".{fmt}" and not path.is_dir():
            raise UserError(f"--out {base}: a subtitle file holds one recording, but there are {n_inputs} inputs; "
                            f"give --out a folder (e.g. --out subs/) to get one .{fmt} per input")
        return SubtitleWriter(path, fmt, folder, resume)
    return {"jsonl": JsonlWriter, "txt": TxtWriter, "tsv": TsvWriter}[fmt](path, resume)


# --------------------------------------------------------------------------- alignments
def _textgrid_tier(name: str, items: list[tuple[float, float, str]], xmax: float) -> list[str]:
    """An IntervalTier tiling ``[0, xmax]``: ``items`` (start, end, label) in order, gaps as empty intervals."""
    intervals: list[tuple[float, float, str]] = []
    t = 0.0
    for start, end, label in items:
        start, end = max(start, t), min(max(end, start), xmax)
        if end <= start:
            continue
        if start > t:
            intervals.append((t, start, ""))
        intervals.append((start, end, label))
        t = end
    if t < xmax or not intervals:
        intervals.append((t, xmax, ""))
    lines = ['        class = "IntervalTier"', f'        name = "{name}"', "        xmin = 0", f"        xmax = {xmax}",
             f"        intervals: size = {len(intervals)}"]
    for i, (a, b, label) in enumerate(intervals, 1):
        text = label.replace('"', '""')
        lines += [f"        intervals [{i}]:", f"            xmin = {round(a, 3)}", f"            xmax = {round(b, 3)}",
                  f'            text = "{text}"']
    return lines


def format_textgrid(record: dict) -> str:
    """A Praat TextGrid (long text format) of an alignment record: tiers ``words`` and ``tokens``.

    record: ``{"duration", "words": [{"word", "start", "end", "aligned"}], "tokens": [{"token", "start",
    "end"}]}`` (:meth:`s2s_media.inference.align.Aligner.align_reader`). Words that are not aligned have no
    interval; the gaps between intervals are empty intervals, as Praat requires.
    """
    xmax = record["duration"]
    words = [(w["start"], w["end"], w["word"]) for w in record["words"] if w.get("aligned")]
    tokens = [(t["start"], t["end"], t["token"]) for t in record.get("tokens", [])]
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax}",
             "tiers? <exists>", "size = 2", "item []:"]
    for i, (name, items) in enumerate((("words", words), ("tokens", tokens)), 1):
        lines += [f"    item [{i}]:"] + _textgrid_tier(name, items, xmax)
    return "\n".join(lines) + "\n"


def format_alignment(record: dict, fmt: str) -> str:
    """One alignment record as ``jsonl`` (one line), ``srt`` (cues of the aligned words) or ``textgrid``."""
    if fmt == "jsonl":
        return json.dumps(record, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return format_subtitles({**record, "words": [w for w in record["words"] if w.get("aligned")]}, "srt")
    if fmt == "textgrid":
        return format_textgrid(record)
    raise UserError(f"--format {fmt}: alignments are written as {', '.join(ALIGN_FORMATS)}")


ALIGN_FORMATS = ("jsonl", "srt", "textgrid")
