"""``s2s-media align AUDIO TRANSCRIPT`` (or ``--manifest M``): word and token timings of a known transcript."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
output:
  jsonl: one record per recording: {"path", "id"?, "text", "duration", "language",
    "words": [{"word", "start", "end", "confidence", "aligned", "reason"?}],
    "tokens": [{"token", "start", "end", "prob", "word"}], "unaligned"}; an item that fails is
    {"path", "id"?, "error"}. Times are seconds. "text" and the words are the transcript as the model's
    language normalises it (lower case, no punctuation, English numbers spelled out).
  srt: cues built from the aligned words. textgrid: a Praat TextGrid with tiers "words" and "tokens".
  With --manifest, jsonl goes to one file (--out, default stdout) and srt/textgrid to a folder
  (--out DIR: DIR/<id>.srt or DIR/<id>.TextGrid).

words that are not aligned:
  A word is never given times it does not have: words the model has no tokens for, words the
  search skipped or did not find before the audio ends, and words whose confidence (the geometric
  mean of their tokens' peak posteriors) is under --min-confidence are written with "aligned": false,
  no times, and a "reason".

long recordings:
  Audio longer than --window seconds is read and aligned one window at a time (memory stays that of
  one window); each window continues from the end of the last word the previous one placed.

exit status: 0 all aligned, 1 some items failed or have unaligned words, 2 bad usage.
"""


def add_parser(sub) -> None:
    from s2s_media.inference.writers import ALIGN_FORMATS    # light: the aligner (torch) loads in run()

    p = sub.add_parser(
        "align",
        description="Force-align a transcript to audio with the model's CTC head (Viterbi over the "
                    "transcript's tokens) and write word and token timings as JSONL, SRT or a Praat TextGrid. "
                    "Without --model the bundled default model is used.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio", nargs="?", metavar="AUDIO", help="the recording")
    p.add_argument("transcript", nargs="?", metavar="TRANSCRIPT",
                   help="a text file holding the transcript, or the transcript itself in quotes")
    p.add_argument("--manifest", help="align every entry (audio, text, offset, duration) of this JSONL manifest")
    p.add_argument("--model", help="checkpoint with a CTC head (default: the bundled model)")
    p.add_argument("--out", help="output file (default: stdout); with --manifest and srt/textgrid, a folder")
    p.add_argument("--format", choices=ALIGN_FORMATS, help="jsonl, srt or textgrid (default: from --out's "
                   "extension, else jsonl)")
    p.add_argument("--window", type=float,
                   help="seconds of audio aligned at once; longer audio goes window by window (default 30)")
    p.add_argument("--margin", type=float,
                   help="words ending this close to a window's end wait for the next window (default 2)")
    p.add_argument("--min-confidence", type=float,
                   help="words whose confidence (geometric mean of their tokens' posteriors) is under this are "
                        "marked unaligned (default 0.02)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(run=run)


def read_transcript(value: str) -> str:
    """The transcript: the file ``value`` names, or ``value`` itself when it names no file."""
    from s2s_media.errors import UserError

    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".txt", ".lab", ".text") or "/" in value:
        raise UserError(f"{value}: transcript file not found (pass the file, or the transcript itself in quotes)")
    return value


def run(args) -> int:
    from s2s_media.device import pick_device
    from s2s_media.errors import UserError
    from s2s_media.inference.align import AlignOptions, Aligner
    from s2s_media.inference.checkpoint import bundled_model_path, load_model_file
    from s2s_media.inference.writers import ALIGN_FORMATS, infer_format

    if args.manifest and (args.audio or args.transcript):
        raise UserError("give either AUDIO TRANSCRIPT or --manifest M, not both")
    if not args.manifest and not (args.audio and args.transcript):
        raise UserError("align needs AUDIO and TRANSCRIPT (or --manifest M): s2s-media align talk.wav talk.txt")
    fmt = args.format or ("jsonl" if args.manifest and args.out and Path(args.out).is_dir()
                          else infer_format(args.out, None, ALIGN_FORMATS))
    device = pick_device(args.device)
    loaded = load_model_file(args.model or bundled_model_path("asr"), quantize=device.type == "cpu")
    loaded.model.to(device)
    given = {"window_s": args.window, "margin_s": args.margin, "min_confidence": args.min_confidence}
    aligner = Aligner(loaded, device, AlignOptions(**{k: v for k, v in given.items() if v is not None}))
    if args.manifest:
        return align_manifest(aligner, args.manifest, args.out, fmt)
    record = aligner.align_file(args.audio, read_transcript(args.transcript))
    write_text(args.out, format_record(record, fmt))
    report(record)
    return 1 if record["unaligned"] else 0


def format_record(record: dict, fmt: str) -> str:
    from s2s_media.inference.writers import format_alignment
    return format_alignment(record, fmt)


def write_text(out: str | None, text: str) -> None:
    """``text`` to the file ``out`` (written whole: temp file, then rename), or to stdout."""
    import os

    if not out:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def report(record: dict) -> None:
    n = len(record["words"])
    print(f"{record.get('id') or record['path']}: {n - record['unaligned']} of {n} words aligned "
          f"({record['duration']:.1f} s)", file=sys.stderr)


def align_manifest(aligner, manifest: str, out: str | None, fmt: str) -> int:
    """Align every entry; one failure never stops the others. jsonl streams to one file; srt/textgrid
    write ``OUT/<id>.<ext>``. Returns 1 if any entry failed or has unaligned words."""
    import json

    from s2s_media.data.manifest import check_language, read_manifest
    from s2s_media.errors import UserError
    from s2s_media.progress import progress_bar

    records = read_manifest(manifest)
    check_language(records, aligner.language.tag, manifest)
    if fmt != "jsonl" and not out:
        raise UserError(f"--format {fmt} with --manifest writes one file per entry: give --out FOLDER")
    folder = Path(out) if fmt != "jsonl" else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    stream = open(out, "w", encoding="utf-8") if fmt == "jsonl" and out else sys.stdout
    failed = incomplete = 0
    try:
        for r in progress_bar(records, desc="aligning", unit="utt"):
            try:
                rec = {"id": r.id, **aligner.align_file(r.audio, r.text, r.offset or 0.0,
                                                        r.duration if r.offset is not None else None)}
            except UserError as e:
                failed += 1
                rec = {"id": r.id, "path": r.audio, "error": str(e)}
                print(f"{r.id}: {e}", file=sys.stderr)
            if fmt == "jsonl":
                stream.write(json.dumps(rec, ensure_ascii=False) + "\n")
                stream.flush()
            elif "error" not in rec:
                ext = "srt" if fmt == "srt" else "TextGrid"
                write_text(str(folder / f"{r.id}.{ext}"), format_record(rec, fmt))
            incomplete += bool(rec.get("unaligned"))
    finally:
        if stream is not sys.stdout:
            stream.close()
    print(f"{len(records) - failed} of {len(records)} entries aligned, {failed} failed, "
          f"{incomplete} with unaligned words", file=sys.stderr)
    return 1 if failed or incomplete else 0
