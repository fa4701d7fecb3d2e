#!/usr/bin/env python3
"""Voice activity detectors on noisy and reverberant long-form audio: frame F1, and the WER of
long-form transcription split by each.

    python scripts/bench_vad.py                                   # synthetic test split, bundled model
    python scripts/bench_vad.py --recordings 4 --minutes 0.5 --markdown

Long-form recordings are built from a manifest's utterances (the synthetic test split by default;
reserved evaluation voices are left out): each utterance's leading and trailing silence is trimmed
(frames 40 dB under its peak), and utterances are joined by pauses of 0.4 to 3 s of digital
silence (1 s before the first and after the last). The utterances' spans are the truth. Then
every recording is passed through each channel (``s2s_media.data.channels``: simulated rooms of
``frontend.augment``, babble and pink noise at an SNR taken over the whole recording).

For each channel and detector:

- frame F1 (with precision and recall) of the detector's speech decision on the 10 ms grid against
  the truth (the raw decision: before ``segment`` pads and merges);
- WER of ``transcribe`` over each whole recording with ``--vad`` set to that detector (the bundled
  model by default; punctuation off), against the utterances' texts joined;
- the detector's time per second of audio.

Prints a table (``--markdown`` for docs/benchmarks.md) and writes everything to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s2s_media.data.channels import apply_channel  # noqa: E402
from s2s_media.frontend.audio import HOP_LENGTH, SAMPLE_RATE, load_audio  # noqa: E402
from s2s_media.frontend.vad import VadConfig, frame_energy_db, make_vad, num_frames  # noqa: E402
from s2s_media.metrics import wer  # noqa: E402
from s2s_media.progress import progress_bar  # noqa: E402

DEFAULT_MANIFEST = ROOT / "recipes/synthetic_speech/data/test.jsonl"
RESERVED = ("kallpc16k", "us-slt-hts", "flite:slt")      # the independent evaluation's voices
CHANNELS = {                                             # name -> channels.apply_channel description
    "clean": "clean",
    "pink noise 5 dB": "pink5.0",
    "babble 5 dB": "babble5.0",
    "babble 0 dB": "babble0.0",
    "room rt60 0.6 s": "reverb0.60",
    "room 0.6 s + babble 5 dB": "reverb0.60,babble5.0",
}
METHODS = ("silero", "energy")
TRIM_DB = 40.0


def reserved(speaker: str) -> bool:
    return any(r in speaker for r in RESERVED)


def trimmed(wav: np.ndarray) -> np.ndarray:
    """``wav`` without the frames at its ends quieter than ``TRIM_DB`` under its loudest frame."""
    energy = frame_energy_db(wav)
    loud = np.flatnonzero(energy > energy.max() - TRIM_DB)
    return wav[loud[0] * HOP_LENGTH: min(wav.size, (loud[-1] + 1) * HOP_LENGTH)]


def build_recordings(rows: list[dict], root: Path, count: int, seconds: float, seed: int):
    """``count`` recordings of about ``seconds`` each: (audio, [(start_s, end_s)], reference text)."""
    rng = random.Random(seed)
    rows = [r for r in rows if not reserved(r.get("speaker", ""))]
    rng.shuffle(rows)
    out, it = [], iter(rows)
    for _ in range(count):
        parts, spans, texts, pos = [np.zeros(SAMPLE_RATE, np.float32)], [], [], SAMPLE_RATE
        while pos < seconds * SAMPLE_RATE:
            row = next(it, None)
            if row is None:
                raise SystemExit(f"the manifest has too few utterances for {count} recordings of {seconds:g} s")
            wav = trimmed(load_audio(root / row["audio"]))
            gap = np.zeros(int(rng.uniform(0.4, 3.0) * SAMPLE_RATE), np.float32)
            spans.append((pos / SAMPLE_RATE, (pos + wav.size) / SAMPLE_RATE))
            texts.append(row["text"])
            parts += [wav, gap]
            pos += wav.size + gap.size
        parts.append(np.zeros(SAMPLE_RATE, np.float32))
        out.append((np.concatenate(parts), spans, " ".join(texts)))
    return out


def truth_mask(spans: list[tuple[float, float]], samples: int) -> np.ndarray:
    """Speech on the 10 ms grid: frame ``i`` (centred on sample ``i * HOP_LENGTH``) inside a span."""
    centres = np.arange(num_frames(samples)) * HOP_LENGTH / SAMPLE_RATE
    mask = np.zeros(centres.size, bool)
    for a, b in spans:
        mask |= (centres >= a) & (centres < b)
    return mask


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="JSONL manifest (default: synthetic test split)")
    p.add_argument("--model", help="checkpoint for the WER (default: the bundled model)")
    p.add_argument("--recordings", type=int, default=6, help="long-form recordings per channel (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=1.0, help="length of each recording (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-wer", action="store_true", help="frame F1 only (no model)")
    p.add_argument("--json", default="bench_vad.json", help="where to write the results")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args()

    import torch
    torch.set_num_threads(1)
    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: manifest not found; prepare the corpus (recipes/synthetic_speech) or pass "
                         "--manifest")
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    recordings = build_recordings(rows, manifest.parent, args.recordings, args.minutes * 60, args.seed)
    audio_s = sum(w.size for w, _, _ in recordings) / SAMPLE_RATE
    model = None
    if not args.no_wer:
        from s2s_media import load_model
        model = load_model(args.model, "cpu", task="asr")
    vads = {m: make_vad(VadConfig(m)) for m in METHODS}

    results = []
    bar = progress_bar(total=len(CHANNELS) * len(recordings) * len(METHODS), desc="bench_vad", unit="rec")
    for name, channel in CHANNELS.items():
        stats = {m: {"tp": 0, "fp": 0, "fn": 0, "vad_s": 0.0, "refs": [], "hyps": []} for m in METHODS}
        for k, (clean, spans, ref) in enumerate(recordings):
            wav = apply_channel(clean, channel, seed=args.seed * 1000 + k)
            truth = truth_mask(spans, wav.size)
            for m, vad in vads.items():
                s = stats[m]
                t0 = time.perf_counter()
                pred = vad.speech_mask(vad.scores(wav))
                s["vad_s"] += time.perf_counter() - t0
                s["tp"] += int((pred & truth).sum())
                s["fp"] += int((pred & ~truth).sum())
                s["fn"] += int((~pred & truth).sum())
                if model is not None:
                    rec = model.transcribe(wav, vad=VadConfig(m), punctuation=False)
                    s["refs"].append(ref)
                    s["hyps"].append(rec["text"])
                bar.update(1)
        for m in METHODS:
            s = stats[m]
            precision = s["tp"] / max(s["tp"] + s["fp"], 1)
            recall = s["tp"] / max(s["tp"] + s["fn"], 1)
            f1 = 2 * precision * recall / max(precision + recall, 1e-12)
            row = {"channel": name, "vad": m, "f1": round(f1, 4), "precision": round(precision, 4),
                   "recall": round(recall, 4), "vad_rtf": round(s["vad_s"] / audio_s, 5)}
            if model is not None:
                row["wer"] = round(wer(s["refs"], s["hyps"]).rate, 4)
                row["hyps"] = s["hyps"]
            results.append(row)
    bar.close()

    header = ["channel", "VAD", "frame F1", "precision", "recall", "VAD time / audio"] + \
        ([] if model is None else ["long-form WER"])
    lines = []
    for r in results:
        cells = [r["channel"], r["vad"], f"{r['f1']:.3f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}",
                 f"{r['vad_rtf']:.4f}"] + ([] if model is None else [f"{100 * r['wer']:.1f} %"])
        lines.append(cells)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("| " + " | ".join("---" for _ in header) + " |")
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for cells in lines:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print(f"{len(recordings)} recordings, {audio_s / 60:.1f} min of audio per channel, "
          f"{sum(len(s) for _, s, _ in recordings)} utterances; speech {100 * np.mean(np.concatenate([truth_mask(s, w.size) for w, s, _ in recordings])):.0f} % of frames")
    Path(args.json).write_text(json.dumps({"manifest": str(manifest), "recordings": args.recordings,
                                           "minutes": args.minutes, "seed": args.seed, "results": results},
                                          indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
