"""``s2s-media features MANIFEST... --cache DIR``: compute and store log-mel features ahead of training."""
from __future__ import annotations

import os


def add_parser(sub) -> None:
    p = sub.add_parser(
        "features",
        description="Compute the 80-dim log-mel features of every utterance of the manifests and store them "
                    "in DIR, the folder that training reads when data.feature_cache is set. Entries already "
                    "present are skipped, so an interrupted run continues where it stopped; an unreadable "
                    "file is reported and skipped. Exit code 1 if any utterance failed.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL audio manifests")
    p.add_argument("--cache", required=True, metavar="DIR", help="the feature cache folder")
    p.add_argument("--n-mels", type=int, default=80, help="mel bins (model.n_mels; default 80)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.set_defaults(run=run)


def run(args) -> int:
    from s2s_media.data.feature_cache import FeatureCache, fill_cache
    from s2s_media.data.manifest import read_manifest

    records = [r for path in args.manifests for r in read_manifest(path)]
    cache = FeatureCache(args.cache, args.n_mels)
    failed = 0
    for utt_id, error in fill_cache(cache, records, max(1, args.workers)):
        if error is not None:
            failed += 1
            print(f"warning: {utt_id}: {error}", flush=True)
    print(f"{args.cache}: features for {len(records) - failed} of {len(records)} utterances"
          + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0
