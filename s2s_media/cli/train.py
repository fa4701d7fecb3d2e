"""``s2s-media train CONFIG.yaml [--set key=value ...]``"""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        description="Train a model. The YAML is read into typed configs (model, tokenizer, data, optim, train, "
                    "decode); unknown keys and wrong types are errors. Training resumes automatically from "
                    "<train.exp_dir>/last.pt when it exists. For several GPUs or machines launch with torchrun, "
                    "e.g. 'torchrun --nproc_per_node 4 -m s2s_media.cli.main train conf.yaml'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config, e.g. recipes/synthetic_speech/conf/conformer.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=10 --set data.train=data/train.jsonl "
                        "or --set 'data.train={shards: data/shards}' (tar shards; {shar: DIR} for Lhotse Shar, "
                        "docs/data-formats.md) (repeatable; VALUE is parsed as YAML)")
    p.set_defaults(run=run)


def run(args) -> int:
    from s2s_media.config import load_config
    from s2s_media.training.run import run_training
    cfg = load_config(args.config, args.overrides)
    state = run_training(cfg)
    print(f"trained {state.step} steps over {state.epoch} epochs in {state.elapsed / 60:.1f} min; "
          f"{state.skipped} bad utterances skipped; checkpoints in {cfg.train.exp_dir}")
    return 0
