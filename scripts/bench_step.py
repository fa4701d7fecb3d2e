#!/usr/bin/env python3
"""What one training update costs, per 30 s of audio: forward + backward + AdamW on one thread, in
CPU milliseconds, for a config and variants of it.

A cheap way to rank training-throughput levers (model shape, decoder size, batch size) before a
wall-clock run of ``scripts/bench_train.py``: the batch is random log-mels and random targets
shaped like the corpus (``--utt-seconds`` each, ``--chars-per-second`` characters), so no data is
read. CPU time (``time.process_time``) is much less sensitive than wall time to other work on the
machine, but cache sharing still moves it by a few per cent: compare variants measured together.

    python scripts/bench_step.py recipes/synthetic_speech/conf/conformer_v2.yaml \\
        --variant "" --variant "model.decoder_conf.n_layers=1" \\
        --variant "model.decoder_conf.n_layers=1 data.max_batch_seconds=60"

Each variant is a space-separated list of KEY=VALUE overrides; ``data.max_batch_seconds`` sets the
batch's audio. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from s2s_media.config import load_config
from s2s_media.models.seq2seq import Seq2SeqModel, param_count


def step_cost(config: str, overrides: list[str], utt_seconds: float, chars_per_second: float, steps: int,
              vocab: int = 32, seed: int = 0) -> dict:
    """Median CPU ms of one update, scaled to 30 s of audio, for ``config`` with ``overrides``."""
    cfg = load_config(config, overrides)
    torch.manual_seed(seed)
    model = Seq2SeqModel(cfg.model, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = max(1, int(cfg.data.max_batch_seconds // utt_seconds))
    frames, chars = int(utt_seconds * 100), int(utt_seconds * chars_per_second)
    feats = torch.randn(batch, frames, cfg.model.n_mels)
    lengths = torch.full((batch,), frames)
    targets = [torch.randint(4, vocab - 1, (chars,)).tolist() for _ in range(batch)]
    times = []
    for i in range(steps + 2):                     # two warm-up updates
        t0 = time.process_time()
        model(feats, lengths, targets, [1])["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.process_time() - t0)
    audio = batch * utt_seconds
    return {"variant": " ".join(overrides) or "(as configured)", "batch": f"{batch} x {utt_seconds:g} s",
            "params_m": param_count(model) / 1e6, "ms_per_30s": 1000 * statistics.median(times) * 30 / audio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="training YAML")
    ap.add_argument("--variant", action="append", default=None, metavar="'K=V K=V'",
                    help="overrides of one variant (repeatable; '' = the config as it is; default: just that)")
    ap.add_argument("--utt-seconds", type=float, default=6.0, help="utterance length (default 6)")
    ap.add_argument("--chars-per-second", type=float, default=14.0, help="target length per second (default 14)")
    ap.add_argument("--steps", type=int, default=8, help="timed updates per variant (default 8)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    print("| variant | batch | params (M) | CPU ms per 30 s of audio |\n| --- | --- | ---: | ---: |", flush=True)
    for variant in args.variant or [""]:
        r = step_cost(args.config, variant.split(), args.utt_seconds, args.chars_per_second, args.steps)
        print(f"| {r['variant']} | {r['batch']} | {r['params_m']:.2f} | {r['ms_per_30s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
