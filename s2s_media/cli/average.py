"""``s2s-media average``: average the weights of the last (or best) N checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

from s2s_media.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "average",
        description="Average model weights over checkpoints of EXP_DIR: the last N epoch checkpoints "
                    "(epoch_*.pt, default) or, with --best, the N with the lowest dev WER (best.json). "
                    "The result is a normal checkpoint (config, tokenizer and CMVN copied from the newest).")
    p.add_argument("exp_dir", help="experiment folder written by 's2s-media train'")
    p.add_argument("-n", "--num", type=int, default=5, help="how many checkpoints (default 5)")
    p.add_argument("--best", action="store_true", help="average the best N by dev WER instead of the last N")
    p.add_argument("-o", "--out", help="output checkpoint (default EXP_DIR/avg_N.pt or avg_best_N.pt)")
    p.set_defaults(run=run)


def select_checkpoints(exp_dir: Path, num: int, best: bool) -> list[Path]:
    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    if best:
        listing = exp_dir / "best.json"
        if not listing.is_file():
            raise UserError(f"{listing}: not found; train with a dev set to keep best checkpoints, or drop --best")
        paths = [Path(p) for _, p in json.loads(listing.read_text())][:num]
    else:
        paths = sorted(exp_dir.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))[-num:]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise UserError(f"{exp_dir}: no {'best' if best else 'epoch_*.pt'} checkpoints to average")
    return paths


def run(args) -> int:
    from s2s_media.training.checkpoint import average_state_dicts, load_checkpoint, save_checkpoint
    exp = Path(args.exp_dir)
    paths = select_checkpoints(exp, args.num, args.best)
    newest = load_checkpoint(paths[-1])
    out = Path(args.out) if args.out else exp / f"avg_{'best_' if args.best else ''}{args.num}.pt"
    meta = {**newest.get("meta", {}), "averaged": [p.name for p in paths]}
    save_checkpoint({k: v for k, v in newest.items() if k in ("config", "tokenizer", "cmvn")}
                    | {"model": average_state_dicts(paths), "meta": meta}, out)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {out}")
    return 0
