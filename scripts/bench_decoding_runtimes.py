#!/usr/bin/env python3
"""Each decoding method of the bundled model (or ``--model``) on one runtime: RTF, WER and the transcripts.

    python scripts/bench_decoding_runtimes.py torch --json torch.json
    python scripts/bench_decoding_runtimes.py onnx --json onnx.json --compare torch.json

One process per runtime (the torch row imports torch, the ONNX row never does), one thread, ``transcribe`` per
file without punctuation, one untimed warm-up file per method. ``--compare`` counts the transcripts equal to
another run's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runtime", choices=["torch", "onnx"])
    p.add_argument("--model", help="checkpoint or ONNX directory (default: the bundled model's form for RUNTIME)")
    p.add_argument("--manifest", default=str(ROOT / "recipes/synthetic_speech/data/test.jsonl"))
    p.add_argument("--limit", type=int, default=20, help="the first N files (default: %(default)s)")
    p.add_argument("--methods", default="attention,rescoring", help="comma-separated (default: %(default)s)")
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--compare", help="another run's --json: count equal transcripts")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.runtime == "torch":
        import torch
        torch.set_num_threads(1)
    import s2s_media
    from s2s_media.data.manifest import read_manifest
    from s2s_media.metrics import wer
    records = read_manifest(args.manifest)[:args.limit]
    model = s2s_media.load_model(args.model, "cpu", task="asr", runtime=args.runtime, threads=1)
    audio = sum(r.duration for r in records)
    other = json.loads(Path(args.compare).read_text()) if args.compare else {}
    out = {}
    for method in args.methods.split(","):
        model.transcribe(records[0].audio, decoding=method, punctuation=False)
        start = time.perf_counter()
        hyps = [model.transcribe(r.audio, decoding=method, punctuation=False)["text"] for r in records]
        out[method] = {"rtf": (time.perf_counter() - start) / audio, "wer": wer([r.text for r in records], hyps).rate,
                       "hyps": hyps}
        same = ""
        if method in other:
            same = f", {sum(a == b for a, b in zip(hyps, other[method]['hyps']))} of {len(hyps)} transcripts equal"
        print(f"{method} on {args.runtime}: RTF {out[method]['rtf']:.4f}, WER {100 * out[method]['wer']:.2f}%{same}")
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
