#!/usr/bin/env python3
"""What decoding a dynamic-int8 model one row at a time costs, against padded batches.

    python scripts/bench_batch_rows.py --limit 300 --repeats 3        # bundled model, 1 thread

The bundled model's Linear layers are dynamically quantised (one activation scale per input
tensor), so a batched utterance's text depends on its neighbours; ``Searcher.decode_batch``
therefore decodes such models one utterance at a time, unpadded (``row_by_row``). This script
transcribes the same files both ways in one process, alternating the two ``--repeats`` times (the
best wall time of each counts: the machine is shared), and reports RTF, WER and how many files
got a different text in batches than alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", default=str(ROOT / "recipes/synthetic_speech/data/test.jsonl"))
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    p.add_argument("--limit", type=int, default=300, help="first N files (0: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from s2s_media import load_model
    from s2s_media.inference.inputs import Item
    from s2s_media.metrics import wer

    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:args.limit] if args.limit else rows
    items = [Item(str(manifest.parent / r["audio"]), r["id"]) for r in rows]
    audio_s = sum(r["duration"] for r in rows)
    model = load_model(args.model, "cpu", task="asr")
    tr = model.transcriber(punctuation=False, workers=0)
    if not tr.searcher.row_by_row:
        raise SystemExit("this model's results do not depend on its batch (not dynamically quantised); nothing to compare")
    list(tr.run(items[:1]))  # warm-up
    best, texts = {True: float("inf"), False: float("inf")}, {}
    for _ in range(args.repeats):
        for rows_alone in (True, False):
            tr.searcher.row_by_row = rows_alone
            t0 = time.perf_counter()
            texts[rows_alone] = [r["text"] for _, r in tr.run(items)]
            best[rows_alone] = min(best[rows_alone], time.perf_counter() - t0)
    refs = [r["text"] for r in rows]
    differ = sum(a != b for a, b in zip(texts[True], texts[False]))
    print(f"{len(items)} files, {audio_s:.1f} s of audio, {args.threads} thread(s), batches of the model's "
          f"decode.batch_seconds, best of {args.repeats}")
    print("| decoding | wall (s) | RTF | WER |\n| --- | --- | --- | --- |")
    for rows_alone, name in ((False, "padded batches (one activation scale per batch)"),
                             (True, "one utterance at a time (the default for int8)")):
        print(f"| {name} | {best[rows_alone]:.2f} | {best[rows_alone] / audio_s:.4f} | "
              f"{100 * wer(refs, texts[rows_alone]).rate:.2f} % |")
    print(f"cost: {100 * (best[True] / best[False] - 1):+.0f} % wall time; {differ} of {len(items)} files "
          "have another text in batches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
