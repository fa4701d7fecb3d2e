#!/usr/bin/env python3
"""What punctuation costs next to speech decoding, in CPU seconds of this process, on one thread.

The first ``--limit`` entries of ``--manifest`` are transcribed with the bundled (or ``--model``)
speech model and punctuation off, in one batched run (audio reading included, one untimed warm-up
file); then the punctuation model (bundled, or ``--punctuation-model``) restores every record's
words, ``--repeat`` times, and the mean is taken. CPU time (``time.process_time``) rather than wall
time, so other work on the machine changes the figure little. Markdown goes to stdout::

    python scripts/bench_punctuation.py --manifest recipes/synthetic_speech/data/test.jsonl --limit 40
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import s2s_media
from s2s_media.inference.punctuation import Punctuator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True, help="JSONL manifest of audio (its paths relative to its folder)")
    ap.add_argument("--limit", type=int, default=40, help="files to transcribe (default 40)")
    ap.add_argument("--model", help="speech model (default: the bundled one)")
    ap.add_argument("--punctuation-model", help="punctuation model (default: the bundled one)")
    ap.add_argument("--repeat", type=int, default=5, help="punctuation passes over all records (default 5)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.manifest).parent
    rows = [json.loads(x) for x in Path(args.manifest).read_text().splitlines()[: args.limit + 1]]
    files = [str(root / r["audio"]) for r in rows]
    model = s2s_media.load_model(args.model, device="cpu")
    punctuator = Punctuator.load(args.punctuation_model)
    list(model.transcribe_files(files[:1], punctuation=False))                 # warm-up, untimed
    start = time.process_time()
    records = list(model.transcribe_files(files[1:], punctuation=False, workers=0))
    decode_s = time.process_time() - start
    words = [[w["word"] for w in r["words"]] for r in records if "words" in r]
    punctuator.restore(words[0])                                                # warm-up
    start = time.process_time()
    for _ in range(args.repeat):
        for w in words:
            punctuator.restore(w)
    punct_s = (time.process_time() - start) / args.repeat
    audio_s = sum(r.get("duration", 0.0) for r in records)
    n_words = sum(len(w) for w in words)
    print(f"load average {os.getloadavg()[0]:.1f}; {len(records)} files, {audio_s:.1f} s of audio, {n_words} words; "
          "one thread; CPU seconds of this process\n")
    print("| step | CPU s | per file (ms) | share of decoding |\n| --- | ---: | ---: | ---: |")
    print(f"| speech decoding (punctuation off) | {decode_s:.2f} | {1000 * decode_s / len(records):.1f} | 100 % |")
    print(f"| punctuation restore | {punct_s:.3f} | {1000 * punct_s / len(records):.2f} | "
          f"{100 * punct_s / decode_s:.2f} % |")


if __name__ == "__main__":
    main()
