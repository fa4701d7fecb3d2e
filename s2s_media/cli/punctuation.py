"""``s2s-media punctuation {train,evaluate,restore}``: the punctuation and casing model."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser(
        "punctuation",
        description="The model that writes normalised transcripts ('is it you') as text ('Is it you?'): it "
                    "restores capitals and . , ? ! and never changes the words. 'transcribe' applies the "
                    "bundled one to final results (--no-punctuation turns it off).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("train", help="train on written text (recipes/punctuation)")
    t.add_argument("config", help="YAML with model, data and train sections (recipes/punctuation/conf/*.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    t.set_defaults(run=run_train)
    e = actions.add_parser("evaluate", help="per-mark F1 and casing accuracy on written text")
    e.add_argument("texts", nargs="+", metavar="TEXT",
                   help="UTF-8 files (each line one unit: its words are normalised, restored and compared) "
                        "or .jsonl manifests (each entry's text)")
    e.add_argument("--model", help="punctuation model file (default: the bundled one)")
    e.set_defaults(run=run_evaluate)
    r = actions.add_parser("restore", help="write lines of text (normalised first) from stdin or FILE to stdout with marks and capitals")
    r.add_argument("file", nargs="?", help="UTF-8 text, one transcript a line (default: stdin)")
    r.add_argument("--model", help="punctuation model file (default: the bundled one)")
    r.set_defaults(run=run_restore)


def run_train(args) -> int:
    import json

    from s2s_media.training.punctuation import load_punctuation_config, train_punctuation

    cfg = load_punctuation_config(args.config, args.set)
    summary = train_punctuation(cfg, source_name=args.config)
    best = summary["history"][-1] if summary["history"] else {}
    print(json.dumps({"model": summary["model"], "params": summary["params"], "minutes": summary["minutes"],
                      "best_dev_score": round(summary["best_dev_score"], 4), "last_epoch": best}))
    return 0


def _units(path: str) -> list[str]:
    from pathlib import Path

    from s2s_media.data.manifest import read_manifest
    from s2s_media.errors import UserError

    if path.endswith(".jsonl"):
        return [r.text for r in read_manifest(path)]
    if not Path(path).is_file():
        raise UserError(f"{path}: text file not found")
    try:
        return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None


def run_evaluate(args) -> int:
    import torch

    from s2s_media.inference.punctuation import Punctuator, score_texts

    torch.set_num_threads(1)             # a small model: more threads only wait on each other
    punctuator = Punctuator.load(args.model)
    for path in args.texts:
        scores = score_texts(punctuator, _units(path))
        print(f"## {path}\n\n{scores.table()}\n", flush=True)
    return 0


def run_restore(args) -> int:
    import torch

    from s2s_media.inference.punctuation import Punctuator
    from s2s_media.text.normalize import normalize_text

    torch.set_num_threads(1)
    punctuator = Punctuator.load(args.model)
    lines = _units(args.file) if args.file else sys.stdin
    for line in lines:
        print(punctuator.restore_text(normalize_text(line)), flush=True)
    return 0
