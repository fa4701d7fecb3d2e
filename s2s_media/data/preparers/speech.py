"""Speech corpus preparers: LibriSpeech, Common Voice, Kaldi data dirs and the synthetic corpus.

The contract and shared behaviour are described in :mod:`s2s_media.data.preparers`.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import soundfile as sf

from s2s_media.data.manifest import AudioRecord
from s2s_media.data.preparers.common import Issues, header_duration, make_record, progress, require_dir, write_splits
from s2s_media.data import synthetic_speech
from s2s_media.errors import AudioError, UserError
from s2s_media.frontend.audio import SAMPLE_RATE, audio_duration, load_audio
from s2s_media.text.language import DEFAULT_LANGUAGE, get_language, same_language
from s2s_media.text.normalize import normalize_text

log = logging.getLogger("s2s_media.data.preparers")


# --------------------------------------------------------------------------- LibriSpeech

_LS_SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
_LS_EXPECTED = ("a LibriSpeech root with subset folders such as train-clean-100/, dev-clean/, test-clean/ "
                "holding SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac and SPEAKER-CHAPTER.trans.txt")


def _librispeech_subsets(src: Path) -> list[Path]:
    """Subset folders directly in ``src`` or in ``src/LibriSpeech``, sorted by name."""
    for root in (src, src / "LibriSpeech"):
        if root.is_dir():
            subsets = sorted(p for p in root.iterdir() if p.is_dir() and _LS_SUBSET.match(p.name))
            if subsets:
                return subsets
    raise UserError(f"librispeech: no subset folders (train-*, dev-clean, test-clean, ...) in {src}; "
                    f"expected {_LS_EXPECTED}")


def librispeech_split(subset: str) -> str:
    """Manifest split of a subset folder: ``train-*`` -> train, ``dev-clean`` -> dev, ``dev-other`` -> dev_other."""
    kind, quality = subset.split("-")[:2]
    if kind == "train":
        return "train"
    return kind if quality == "clean" else f"{kind}_{quality}"


def _read_librispeech_transcripts(subset: Path) -> dict[str, str]:
    """``{utt_id: transcript}`` from every ``SPEAKER-CHAPTER.trans.txt`` of a subset."""
    texts: dict[str, str] = {}
    for trans in sorted(subset.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if utt_id:
                texts[utt_id] = text
    return texts


def _scan_librispeech_subset(subset: Path, issues: Issues) -> list[AudioRecord]:
    """Records of one subset folder, in utterance-id order."""
    audio = {p.name[:-len(".flac")]: p for p in subset.glob("*/*/*.flac")}
    texts = _read_librispeech_transcripts(subset)
    for utt_id in sorted(texts.keys() - audio.keys()):
        issues.skip("transcripts without audio", f"{subset.name}: transcript line {utt_id} has no {utt_id}.flac; skipped")
    records = []
    for utt_id in progress(sorted(audio), f"librispeech {subset.name}"):
        path = audio[utt_id].resolve()
        if utt_id not in texts:
            issues.skip("audio without transcript", f"{path}: no line for {utt_id} in the chapter's .trans.txt; skipped")
            continue
        duration = header_duration(path, utt_id, issues)
        if duration is not None:
            record = make_record(issues, utt_id, path, texts[utt_id], duration, speaker=path.parent.parent.name)
            if record:
                records.append(record)
    return records


def prepare_librispeech(src: Path, out: Path) -> dict[str, Path]:
    """LibriSpeech: all ``train-*`` subsets -> train, ``dev-clean`` -> dev, ``test-clean`` -> test.

    ``dev-other`` and ``test-other``, when present, become ``dev_other`` and ``test_other``.
    ``src`` is the folder holding the subset folders, or its parent (the folder holding ``LibriSpeech/``).
    Speaker = the SPEAKER folder; durations come from the FLAC headers.
    """
    require_dir(src, "librispeech", _LS_EXPECTED)
    issues = Issues("librispeech")
    splits: dict[str, list[AudioRecord]] = {}
    for subset in _librispeech_subsets(src):
        splits.setdefault(librispeech_split(subset.name), []).extend(_scan_librispeech_subset(subset, issues))
    missing = [s for s in ("train", "dev", "test") if s not in splits]
    if missing:
        log.warning("librispeech: no subset for split(s) %s in %s", ", ".join(missing), src)
    return write_splits(out, splits, issues, _LS_EXPECTED)


# --------------------------------------------------------------------------- Common Voice

_CV_SPLITS = ("train", "dev", "test")
_CV_EXPECTED = "a Common Voice language folder with clips/*.mp3 and train.tsv, dev.tsv, test.tsv"
_LANGUAGE_DIR = re.compile(r"^[a-z]{2,3}(-[A-Z][A-Za-z]{1,3})?$")     # en, yue, zh-CN, sv-SE, ca-ES


def _is_commonvoice_dir(path: Path) -> bool:
    return (path / "clips").is_dir() and any((path / f"{s}.tsv").is_file() for s in _CV_SPLITS)


def _commonvoice_root(src: Path) -> Path:
    """The language folder: ``src`` itself, or its only language sub-folder."""
    require_dir(src, "commonvoice", _CV_EXPECTED)
    if _is_commonvoice_dir(src):
        return src
    langs = sorted(p for p in src.iterdir() if p.is_dir() and _is_commonvoice_dir(p))
    if len(langs) == 1:
        log.info("commonvoice: using language folder %s", langs[0])
        return langs[0]
    if langs:
        raise UserError(f"commonvoice: {src} holds several languages ({', '.join(p.name for p in langs)}); "
                        f"pass one language folder, e.g. {langs[0]}")
    raise UserError(f"commonvoice: no clips/ folder with train.tsv/dev.tsv/test.tsv in {src}; expected {_CV_EXPECTED}")


def read_commonvoice_tsv(path: Path, issues: Issues) -> Iterator[dict[str, str]]:
    """Rows of a Common Voice tsv as dicts keyed by the header.

    Quotes are literal (``csv.QUOTE_NONE``): CV sentences contain unbalanced ``"`` that a quoting
    reader would treat as field delimiters and so swallow the following rows. Rows whose field
    count differs from the header are skipped and counted.
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or "path" not in header or "sentence" not in header:
            raise UserError(f"commonvoice: {path} has no header row with 'path' and 'sentence' columns "
                            f"(found: {', '.join(header or []) or 'nothing'}); is it a Common Voice tsv?")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                issues.skip("malformed tsv rows", f"{path}:{reader.line_num}: {len(row)} fields, header has {len(header)}; skipped")
                continue
            yield dict(zip(header, row))


def _find_clip(clips: Path, name: str) -> Path | None:
    """The clip file for a tsv ``path`` entry (early releases omitted the ``.mp3``)."""
    for candidate in (clips / name, clips / f"{name}.mp3"):
        if candidate.is_file():
            return candidate
    return None


def convert_clip(job: tuple[str, str]) -> tuple[float | None, str | None]:
    """Transcode ``(src, dst)`` to 16 kHz mono 16-bit FLAC; returns ``(duration, error)``.

    An existing ``dst`` is kept (so an interrupted run resumes); the file is written to a temporary
    name and renamed, so ``dst`` is never a partial file. Runs in worker processes.
    """
    src, dst = job
    try:
        if os.path.isfile(dst) and os.path.getsize(dst) > 0:
            return audio_duration(dst), None
        wav = load_audio(src)
        tmp = dst + ".part"
        sf.write(tmp, wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.replace(tmp, dst)
        return len(wav) / SAMPLE_RATE, None
    except AudioError as e:
        return None, str(e)


def _clip_duration(clip: Path) -> tuple[float | None, str | None]:
    """``(duration from the header, None)`` or ``(None, error)`` for an unreadable clip."""
    try:
        return audio_duration(clip), None
    except AudioError as e:
        return None, str(e)


def _convert_all(jobs: list[tuple[str, str]], workers: int) -> Iterator[tuple[float | None, str | None]]:
    """:func:`convert_clip` over ``jobs`` in order, in ``workers`` processes (1: in this process)."""
    if workers <= 1:
        yield from map(convert_clip, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(convert_clip, jobs, chunksize=16)


def _commonvoice_split(tsv: Path, clips: Path, out: Path, convert: bool, workers: int,
                       issues: Issues, language: str) -> list[AudioRecord]:
    """Records of one tsv; with ``convert`` the clips are transcoded into ``out/audio``.

    Rows are filtered (missing clip, empty transcript) before any audio is read or converted.
    """
    rows = []
    for row in read_commonvoice_tsv(tsv, issues):
        clip = _find_clip(clips, row["path"])
        if clip is None:
            issues.skip("missing clips", f"{tsv.name}: clip {clips / row['path']} not found; skipped")
        elif not normalize_text(row["sentence"], language):
            issues.skip("empty transcripts", f"{row['path']}: sentence {row['sentence']!r} is empty after normalisation; skipped")
        else:
            rows.append((row, clip.resolve()))
    if convert:
        (out / "audio").mkdir(parents=True, exist_ok=True)
        jobs = [(str(clip), str(out / "audio" / f"{clip.stem}.flac")) for _, clip in rows]
        results = _convert_all(jobs, workers)
    else:
        results = (_clip_duration(clip) for _, clip in rows)
    records = []
    for (row, clip), (duration, error) in progress(zip(rows, results), f"commonvoice {tsv.stem}", len(rows)):
        if error is not None or duration is None:
            issues.skip("unreadable audio", f"{clip.stem}: {error or 'no audio'}; skipped")
            continue
        audio = f"audio/{clip.stem}.flac" if convert else clip
        record = make_record(issues, clip.stem, audio, row["sentence"], duration, speaker=row.get("client_id"),
                             language=language)
        if record:
            records.append(record)
    return records


def commonvoice_language(root: Path, language: str | None) -> str:
    """The corpus language: ``language`` if given, else the language folder's name when it is a language
    tag (Common Voice names them ``en``, ``de``, ``zh-CN``), else English."""
    if language:
        get_language(language, "--language")
        if _LANGUAGE_DIR.match(root.name) and not same_language(root.name, language):
            log.warning("commonvoice: folder %s looks like language '%s' but --language is '%s'",
                        root, root.name, language)
        return language
    if _LANGUAGE_DIR.match(root.name):
        log.info("commonvoice: language '%s' from the folder name (--language to override)", root.name)
        return root.name
    log.warning("commonvoice: %s is not named after a language; normalising as English (--language to set it)", root)
    return DEFAULT_LANGUAGE


def prepare_commonvoice(src: Path, out: Path, *, convert: bool = False, workers: int | None = None,
                        language: str | None = None) -> dict[str, Path]:
    """Common Voice: ``train.tsv``/``dev.tsv``/``test.tsv`` -> train/dev/test.

    ``src`` is a language folder (``cv-corpus-*/en``) or a release folder holding exactly one.
    ``language`` (default: the language folder's name, e.g. ``de``, ``zh-CN``) picks the normaliser
    (:func:`~s2s_media.text.normalize_text`); every record is marked with it, and with ``digits`` when
    its transcript keeps digits that no verbaliser for the language spelled out.
    Only the ``path`` and ``sentence`` columns are required; speaker = ``client_id`` when present.
    Without ``convert`` the manifests point at the mp3 clips (durations from their headers); with it
    each clip is decoded once into ``out/audio/<clip>.flac`` (16 kHz mono) using ``workers``
    processes (default: all cores), because decoding mp3 at training time is slow.
    """
    root = _commonvoice_root(src)
    language = commonvoice_language(root, language)
    issues = Issues("commonvoice")
    workers = workers or os.cpu_count() or 1
    splits: dict[str, list[AudioRecord]] = {}
    for split in _CV_SPLITS:
        tsv = root / f"{split}.tsv"
        if tsv.is_file():
            splits[split] = _commonvoice_split(tsv, root / "clips", out, convert, workers, issues, language)
        else:
            log.warning("commonvoice: %s not found; no %s split", tsv, split)
    issues.report_digits(language)
    return write_splits(out, splits, issues, _CV_EXPECTED)


# --------------------------------------------------------------------------- Kaldi

_KALDI_SPLITS = {"train": ("train",), "dev": ("dev", "valid", "validation"), "test": ("test", "eval")}
_KALDI_EXPECTED = ("a Kaldi data dir (wav.scp + text, optional segments and utt2spk) or a folder with "
                   "train/, dev/ (or valid/) and test/ (or eval/) data dirs")
_KALDI_NOISE = re.compile(r"<[^<>\s]*>|\[[^\[\]\s]*\]")


def is_kaldi_dir(path: Path) -> bool:
    """True if ``path`` holds the two files every Kaldi data dir has: ``wav.scp`` and ``text``."""
    return (path / "wav.scp").is_file() and (path / "text").is_file()


def _kaldi_data_dirs(src: Path) -> dict[str, Path]:
    """``{split: data dir}``: ``src`` itself as ``{src.name: src}``, or its train/dev/test sub-folders."""
    require_dir(src, "kaldi", _KALDI_EXPECTED)
    if is_kaldi_dir(src):
        log.info("kaldi: %s is a single data dir; writing it as %s.jsonl", src, src.name)
        return {src.name: src}
    found = {split: next((src / n for n in names if is_kaldi_dir(src / n)), None) for split, names in _KALDI_SPLITS.items()}
    dirs = {split: d for split, d in found.items() if d is not None}
    if not dirs:
        raise UserError(f"kaldi: {src} has no wav.scp + text and no train/dev/test data dirs; expected {_KALDI_EXPECTED}")
    used = set(dirs.values())
    others = sorted(p.name for p in src.iterdir() if p.is_dir() and p not in used and is_kaldi_dir(p))
    if others:
        log.warning("kaldi: ignoring data dirs %s (only train, dev/valid, test are read; "
                    "pass a data dir itself to convert it alone)", ", ".join(others))
    return dirs


def read_kaldi_table(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, key, rest of line)`` for each non-blank line of a Kaldi table file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            key, _, rest = line.strip().partition(" ")
            if key:
                yield lineno, key, rest.strip()


def resolve_kaldi_path(value: str, data_dir: Path) -> Path | None:
    """Find the file a ``wav.scp`` path names.

    Relative paths follow Kaldi's convention (relative to the recipe directory the scripts run
    in): they are tried against the current directory, then the data dir's grandparent (the
    recipe dir of ``recipe/data/train``), its parent, and the data dir itself.
    """
    path = Path(value)
    if path.is_absolute():
        return path if path.is_file() else None
    bases = (Path.cwd(), data_dir.parent.parent, data_dir.parent, data_dir)
    return next((base / path for base in bases if (base / path).is_file()), None)


def _read_wav_scp(data_dir: Path, issues: Issues) -> dict[str, Path | None]:
    """``{recording id: absolute audio path}``; pipe entries and missing files map to ``None`` (counted)."""
    wav_scp = data_dir / "wav.scp"
    recordings: dict[str, Path | None] = {}
    for lineno, rec_id, value in read_kaldi_table(wav_scp):
        where = f"{wav_scp}:{lineno}"
        if value.endswith("|"):
            recordings[rec_id] = None
            issues.skip("pipe entries rejected",
                        f"{where}: recording {rec_id} is a pipe command, not a file; convert it to a file first "
                        f"({value[:-1].strip()} > {rec_id}.wav) and put that path in wav.scp")
            continue
        path = resolve_kaldi_path(value, data_dir)
        if path is None:
            issues.skip("missing audio", f"{where}: audio {value} of recording {rec_id} not found; skipped")
        recordings[rec_id] = path.resolve() if path else None
    return recordings


def _kaldi_text(data_dir: Path) -> dict[str, str]:
    """``{utt id: transcript}`` with Kaldi noise markers (``<unk>``, ``[noise]``) removed."""
    return {key: _KALDI_NOISE.sub(" ", rest) for _, key, rest in read_kaldi_table(data_dir / "text")}


def _optional_table(path: Path) -> dict[str, str]:
    return {key: rest for _, key, rest in read_kaldi_table(path)} if path.is_file() else {}


@dataclass
class _Segment:
    utt_id: str
    rec_id: str
    start: float
    end: float          # -1 means "to the end of the recording", as in Kaldi's extract-segments


def _read_segments(path: Path, issues: Issues) -> list[_Segment]:
    """Parse ``UTTID RECID START END [CHANNEL]`` lines; malformed ones are skipped and counted."""
    segments = []
    for lineno, utt_id, rest in read_kaldi_table(path):
        fields = rest.split()
        try:
            if len(fields) not in (3, 4):
                raise ValueError
            start, end = float(fields[1]), float(fields[2])
            if start < 0 or (end != -1 and end <= start):
                raise ValueError
        except ValueError:
            issues.skip("bad segments", f"{path}:{lineno}: expected 'UTTID RECID START END' with 0 <= START < END "
                        f"(END may be -1), got {utt_id} {rest!r}; skipped")
            continue
        segments.append(_Segment(utt_id, fields[0], start, end))
    return segments


def _segment_records(data_dir: Path, recordings: dict[str, Path | None], texts: dict[str, str],
                     speakers: dict[str, str], issues: Issues) -> list[AudioRecord]:
    """Records for a data dir with a ``segments`` file: one per segment, with offset/duration."""
    segments = _read_segments(data_dir / "segments", issues)
    durations: dict[str, float | None] = {}
    records = []
    for seg in progress(segments, f"kaldi {data_dir.name}"):
        if seg.utt_id not in texts:
            issues.skip("audio without transcript", f"{data_dir}: segment {seg.utt_id} has no line in text; skipped")
            continue
        if seg.rec_id not in recordings:
            issues.skip("segments without recording",
                        f"{data_dir}: segment {seg.utt_id} is on recording {seg.rec_id}, which is not in wav.scp; skipped")
            continue
        audio = recordings[seg.rec_id]
        if audio is None:  # rejected in wav.scp, already reported
            continue
        if seg.rec_id not in durations:
            durations[seg.rec_id] = header_duration(audio, seg.rec_id, issues)
        rec_duration = durations[seg.rec_id]
        if rec_duration is None:
            continue
        end = rec_duration if seg.end == -1 else min(seg.end, rec_duration)
        if seg.start >= rec_duration or seg.end > rec_duration + 0.5:
            issues.skip("segments past the end of the audio",
                        f"{data_dir}: segment {seg.utt_id} ({seg.start}-{seg.end} s) lies beyond the end of "
                        f"{audio} ({rec_duration:.2f} s); skipped")
            continue
        record = make_record(issues, seg.utt_id, audio, texts[seg.utt_id], end - seg.start,
                             speaker=speakers.get(seg.utt_id), offset=seg.start)
        if record:
            records.append(record)
    for utt_id in sorted(texts.keys() - {s.utt_id for s in segments}):
        issues.skip("transcripts without audio", f"{data_dir}: text line {utt_id} has no segment; skipped")
    return records


def _whole_file_records(data_dir: Path, recordings: dict[str, Path | None], texts: dict[str, str],
                        speakers: dict[str, str], issues: Issues) -> list[AudioRecord]:
    """Records for a data dir without ``segments``: utterance id = recording id."""
    records = []
    for utt_id in progress(sorted(texts), f"kaldi {data_dir.name}"):
        if utt_id not in recordings:
            issues.skip("transcripts without audio", f"{data_dir}: text line {utt_id} has no wav.scp entry; skipped")
            continue
        audio = recordings[utt_id]
        if audio is None:  # rejected in wav.scp, already reported
            continue
        duration = header_duration(audio, utt_id, issues)
        if duration is not None:
            record = make_record(issues, utt_id, audio, texts[utt_id], duration, speaker=speakers.get(utt_id))
            if record:
                records.append(record)
    return records


def kaldi_records(data_dir: Path, issues: Issues) -> list[AudioRecord]:
    """All records of one Kaldi data dir (``wav.scp``, ``text``, optional ``segments``, ``utt2spk``)."""
    recordings = _read_wav_scp(data_dir, issues)
    texts = _kaldi_text(data_dir)
    speakers = _optional_table(data_dir / "utt2spk")
    if (data_dir / "segments").is_file():
        return _segment_records(data_dir, recordings, texts, speakers, issues)
    for rec_id in sorted({r for r, path in recordings.items() if path} - texts.keys()):
        issues.skip("audio without transcript", f"{data_dir}: recording {rec_id} has no line in text; skipped")
    return _whole_file_records(data_dir, recordings, texts, speakers, issues)


def prepare_kaldi(src: Path, out: Path) -> dict[str, Path]:
    """Kaldi data dirs: ``src/{train,dev|valid,test}`` -> train/dev/test.

    If ``src`` is itself a data dir it is written alone as ``out/<name of src>.jsonl``. ``wav.scp``
    entries must be audio files (pipe commands ``... |`` are rejected, one warning each); a
    ``segments`` file gives offset/duration per utterance; ``utt2spk`` gives the speaker.
    ``<...>`` and ``[...]`` noise markers are removed from transcripts before normalisation.
    """
    issues = Issues("kaldi")
    splits = {split: kaldi_records(d, issues) for split, d in _kaldi_data_dirs(src).items()}
    return write_splits(out, splits, issues, _KALDI_EXPECTED)


# --------------------------------------------------------------------------- synthetic

def prepare_synthetic(src: Path, out: Path, *, hours: float | None = None, dev_utts: int | None = None,
                      test_utts: int | None = None, seed: int | None = None, workers: int | None = None,
                      min_words: int | None = None, max_words: int | None = None) -> dict[str, Path]:
    """Synthesise a corpus with :func:`s2s_media.data.synthetic_speech.generate_corpus`.

    ``src`` is a text source of :func:`s2s_media.data.synthetic_speech.source_paragraphs`
    (``fortunes``, ``wordnet``, a text file, or several joined by ``+``), which checks it. Options
    left at ``None`` take the generator's defaults.
    """
    source = str(src)
    options = dict(hours=hours, dev_utts=dev_utts, test_utts=test_utts, seed=seed, workers=workers,
                   min_words=min_words, max_words=max_words)
    return synthetic_speech.generate_corpus(source, out, **{k: v for k, v in options.items() if v is not None})
