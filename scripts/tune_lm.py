#!/usr/bin/env python3
"""Grid search of the language model's weight and bonus, and the beam, on a dev manifest.

    python scripts/tune_lm.py --model exp/avg.pt --lm exp/lm.pt --manifest data/dev.jsonl \
        --beams 4 8 12 16 --weights 0.5 0.7 0.9 --bonuses 1.0 1.5 2.0

The encoder runs once per utterance; every grid point then re-runs only the search (CTC prefix
beam with the LM fused, then attention rescoring of the best ``--rescore-nbest``), exactly as
``s2s-media evaluate --decoding rescoring --lm LM --lm-weight W --lm-bonus B --beam N`` would
(same batches, same int8 model on the CPU). A row with weight 0 is the search without the LM.
Prints a markdown table best first, with the search's own seconds (encoder excluded). Tune on
dev, never on test.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint (.pt)")
    p.add_argument("--lm", required=True, help="LM file from s2s-media lm")
    p.add_argument("--manifest", required=True, help="JSONL manifest with references (a dev split)")
    p.add_argument("--beams", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 0.7, 0.9])
    p.add_argument("--bonuses", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    p.add_argument("--rescore-nbest", type=int, default=None, help="default: the model's decode.rescore_nbest")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from tqdm import tqdm

    from s2s_media.data.dataset import eval_loader
    from s2s_media.data.manifest import read_manifest
    from s2s_media.inference.checkpoint import load_model_file
    from s2s_media.inference.pipeline import Searcher
    from s2s_media.metrics import wer

    torch.set_num_threads(args.threads)
    loaded = load_model_file(args.model, quantize=True, lm=args.lm)
    tok = loaded.tokenizer
    base = loaded.config.decode.override(method="rescoring", rescore_nbest=args.rescore_nbest)
    encoder = Searcher(loaded, base)
    encoded, refs = [], []
    with torch.inference_mode():
        for batch in tqdm(eval_loader(read_manifest(args.manifest), tok, loaded.config.model.n_mels,
                                      base.batch_seconds), desc="encoding", unit="batch", file=sys.stderr):
            if batch["ids"]:
                encoded.append(encoder.encode(batch["feats"], batch["lengths"]))
                refs += batch["texts"]
    grid = [(b, w, bo) for b, w, bo in itertools.product(args.beams, args.weights, args.bonuses)
            if w > 0 or bo == args.bonuses[0]]                     # without the LM the bonus is moot
    rows = []
    for beam, weight, bonus in tqdm(grid, desc="grid", unit="point", file=sys.stderr):
        searcher = Searcher(loaded, base.override(beam=beam, lm_weight=weight, lm_bonus=bonus))
        lm = searcher.lm
        hyps, start = [], time.perf_counter()
        with torch.inference_mode():
            for memory, mask in encoded:
                hyps += [tok.decode(d.tokens) for d in searcher.search(memory, mask)]
        rows.append((wer(refs, hyps).rate, beam, weight if lm else 0.0, bonus if lm else None,
                     time.perf_counter() - start))
    print(f"\n{args.manifest}: {len(refs)} utterances; rescoring the best {base.rescore_nbest}; "
          f"{args.threads} thread(s)\n")
    print("| WER | beam | LM weight | LM bonus | search (s) |\n| ---: | ---: | ---: | ---: | ---: |")
    for rate, beam, weight, bonus, secs in sorted(rows):
        print(f"| {100 * rate:.2f} % | {beam} | {weight:g} | {'-' if bonus is None else f'{bonus:g}'} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
