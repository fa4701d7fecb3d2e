#!/usr/bin/env python3
"""Streaming vs offline WER of one checkpoint on one manifest.

    python scripts/eval_streaming.py --model exp/avg.pt --manifest recipes/synthetic_speech/data/test.jsonl
    python scripts/eval_streaming.py --model M --manifest M --chunk-size 8 --no-endpoint --json out.json

Every utterance is fed to a :class:`~s2s_media.inference.streaming.StreamingRecognizer` in pieces of
``--piece-ms`` (as a live client would send it; its finals are joined) and decoded offline by the
toolkit's evaluation path with the same chunk mask, beam and rescoring
(:func:`~s2s_media.inference.streaming.offline_decode`). Prints both WERs, how many texts are identical, and
the real-time factors. With ``--no-endpoint`` the two differ only where the left-context cap bites.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="checkpoint (.pt)")
    p.add_argument("--manifest", required=True, type=Path, help="JSONL manifest with references")
    p.add_argument("--chunk-size", type=int, default=None, help="encoder frames per chunk (40 ms each)")
    p.add_argument("--num-left-chunks", type=int, default=None, help="left context in chunks; -1 = all")
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--no-rescore", action="store_true", help="finals from the CTC search alone")
    p.add_argument("--no-endpoint", action="store_true", help="one segment per utterance")
    p.add_argument("--piece-ms", type=float, default=100.0, help="audio per accept_waveform call")
    p.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write the scores and every hypothesis here")
    args = p.parse_args(argv)

    import dataclasses

    import torch

    from s2s_media.errors import UserError
    from s2s_media.inference.checkpoint import load_model_file
    from s2s_media.inference.evaluate import evaluate_streaming
    from s2s_media.inference.streaming import StreamingConfig, StreamingRecognizer

    torch.set_num_threads(args.threads)
    try:
        cfg = StreamingConfig()
        over = {"chunk_size": args.chunk_size, "num_left_chunks": args.num_left_chunks, "beam": args.beam}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in over.items() if v is not None},
                                  rescore=not args.no_rescore)
        if args.no_endpoint:
            cfg.endpoint = dataclasses.replace(cfg.endpoint, enabled=False)
        if args.piece_ms <= 0:
            raise UserError(f"--piece-ms: must be > 0, got {args.piece_ms}")
        rec = StreamingRecognizer(load_model_file(args.model), cfg, device=args.device)
        result = evaluate_streaming(rec, args.manifest, max(1, int(args.piece_ms * 16)), args.limit)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = result.summary()
    print(f"{result.utterances} utterances, {s['audio_seconds']} s of audio; chunk {cfg.chunk_size} frames "
          f"({cfg.chunk_size * 40} ms), left chunks {cfg.num_left_chunks}, beam {rec.beam}, "
          f"rescore {cfg.rescore}, endpointing {cfg.endpoint.enabled}")
    print(f"streaming WER {result.streaming}  RTF {s['streaming_rtf']:.4f}")
    print(f"offline   WER {result.offline}  RTF {s['offline_rtf']:.4f}")
    print(f"identical texts: {result.identical} / {result.utterances}")
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "config": dataclasses.asdict(cfg), "rows": result.rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
