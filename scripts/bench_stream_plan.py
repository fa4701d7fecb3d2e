"""How long the shard-stream sampler takes to plan one epoch, and the index it plans from.

Plans a synthetic index (no audio: durations only) of ``--hours`` of utterances in shards of
``--shard-seconds``, for ``--ranks`` x ``--workers`` streams, and prints the planning time and the
batch counts. Every rank plans the epoch at start and at each epoch boundary.

    python scripts/bench_stream_plan.py --hours 1000 --ranks 2 --workers 2
"""
from __future__ import annotations

import argparse
import random
import time
from types import SimpleNamespace

from s2s_media.data.stream_sampler import StreamBatchSampler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=1000.0)
    p.add_argument("--shard-seconds", type=float, default=3600.0)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-seconds", type=float, default=200.0)
    p.add_argument("--buffer", type=int, default=1000)
    args = p.parse_args()
    rng = random.Random(0)
    items, total, shard, held = [], 0.0, 0, 0.0
    while total < args.hours * 3600:
        d = rng.uniform(1.0, 16.0)
        if held >= args.shard_seconds:
            shard, held = shard + 1, 0.0
        items.append(SimpleNamespace(shard=f"shard-{shard:06d}.tar", duration=d, problem=None))
        total, held = total + d, held + d
    start = time.perf_counter()
    sampler = StreamBatchSampler(items, args.batch_seconds, 128, 20, args.buffer, world_size=args.ranks,
                                 num_workers=args.workers)
    n = len(sampler)
    seconds = time.perf_counter() - start
    sampler.set_epoch(1)
    start = time.perf_counter()
    len(sampler)
    again = time.perf_counter() - start
    print(f"{len(items)} utterances, {shard + 1} shards, {args.ranks} x {args.workers} streams: "
          f"{n} batches per rank; plan {seconds:.1f} s (next epoch {again:.1f} s)")


if __name__ == "__main__":
    main()
