"""``s2s-media shard MANIFEST OUT --shard-seconds 3600``: write a JSONL manifest as WebDataset tar shards."""
from __future__ import annotations

import argparse
import os
import sys

from s2s_media.cli.prepare import _number
from s2s_media.data.manifest import read_manifest
from s2s_media.data.shards import write_shards
from s2s_media.progress import duration_text


def add_parser(sub) -> None:
    p = sub.add_parser(
        "shard",
        description="Read every utterance of MANIFEST (segments included), encode it as 16 kHz 16-bit FLAC and "
                    "write OUT/<prefix>-000000.tar, ... of about --shard-seconds of audio each, in the WebDataset "
                    "layout: KEY.flac + KEY.json (id, text, duration, speaker). Utterances are shuffled first so "
                    "that each shard mixes speakers. Train from them with data.train: {shards: OUT}. An unreadable "
                    "file is reported and skipped; exit code 1 if any was.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL audio manifest")
    p.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--shard-seconds", type=_number(float), default=3600.0, help="seconds of audio per shard")
    p.add_argument("--prefix", default="shard", help="shard file name prefix")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep the manifest's order")
    p.add_argument("--workers", type=_number(int), default=os.cpu_count() or 1, help="decoding threads")
    p.set_defaults(run=run)


def run(args) -> int:
    records = read_manifest(args.manifest)

    def warn(utt_id: str, reason: str) -> None:
        print(f"warning: {utt_id}: {reason}; skipped", file=sys.stderr, flush=True)

    report = write_shards(records, args.out, args.shard_seconds, prefix=args.prefix, shuffle=args.shuffle,
                          seed=args.seed, workers=args.workers, on_skip=warn)
    print(f"{args.out}: {len(report.shards)} shard(s), {report.utterances} utterances, "
          f"{duration_text(report.seconds)}" + (f"; {len(report.skipped)} skipped" if report.skipped else ""))
    if report.shards:
        print(f"train from them with: --set 'data.train={{shards: {report.shards[0].parent}}}'")
    return 1 if report.skipped else 0
