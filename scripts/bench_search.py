#!/usr/bin/env python
"""Time the CTC prefix beam search alone, on one thread, over a test set's real CTC posteriors.

Times are wall clock and CPU time of this process (the figure to compare on a loaded machine).
The encoder runs once (its log-posteriors are cached in ``--cache``); then every search named in
``--searches`` decodes all utterances with and without the model's language model, with the model's
decoding settings. Prints seconds of search per row, the RTF of the search alone and the WER.

    python scripts/bench_search.py --manifest recipes/synthetic_speech/data/test.jsonl
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from s2s_media.data.manifest import read_manifest
from s2s_media.decoding.native import KenLMFusion, native_nbest_batch
from s2s_media.inference.checkpoint import bundled_model_path, load_model_file
from s2s_media.inference.evaluate import eval_loader, iterate_batches
from s2s_media.inference.pipeline import Searcher
from s2s_media.lm.arpa import arpa_words
from s2s_media.metrics import wer

from s2s_media.decoding.ctc import ctc_prefix_beam_search_batch
SEARCHES = {"native": native_nbest_batch,
            "python": lambda lp, lengths, **kw: ctc_prefix_beam_search_batch(torch.from_numpy(lp), lengths, **kw)}


def posteriors(loaded, manifest: str, limit: int) -> tuple[list[np.ndarray], list[str], float]:
    """Per utterance its CTC log-posteriors (T, V), its reference, and the seconds of audio."""
    searcher = Searcher(loaded, loaded.config.decode, methods=["ctc_greedy"])
    records = read_manifest(manifest)[: limit or None]
    loader = eval_loader(records, loaded.tokenizer, loaded.config.model.n_mels, 60.0, 1)
    out, refs, seconds = [], [], 0.0
    bar = tqdm(total=len(records), desc="encoding", file=sys.stderr)
    for batch, feats, lengths in iterate_batches(loader, "cpu"):
        bar.update(len(batch["ids"]) + len(batch["bad"]))
        if feats is None:
            continue
        with torch.inference_mode():
            memory, mask = searcher.encode(feats, lengths)
            lp = loaded.model.ctc(memory).float()
        out.extend(lp[b, :n].numpy() for b, n in enumerate(mask.sum(1).tolist()))
        refs.extend(batch["texts"])
        seconds += batch["seconds"]
    bar.close()
    return out, refs, seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(bundled_model_path("asr")))
    p.add_argument("--manifest", required=True)
    p.add_argument("--limit", type=int, default=0, help="first N utterances (0 = all)")
    p.add_argument("--cache", default="", help="npz file of the posteriors (written if missing)")
    p.add_argument("--searches", default=",".join(SEARCHES))
    p.add_argument("--lm-kinds", default="none,fusion", help="rows per search: none (no LM), fusion (the model's LM)")
    p.add_argument("--arpa", help="also run the native search with this ARPA file in KenLM (written by "
                   "s2s_media.lm.arpa.write_arpa with the model's LM bonus / weight as token_bonus)")
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = load_model_file(args.model)
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        lps, refs, seconds = [z[f"lp{i}"] for i in range(int(z["n"]))], list(z["refs"]), float(z["seconds"])
    else:
        lps, refs, seconds = posteriors(loaded, args.manifest, args.limit)
        if cache:
            np.savez(cache, n=len(lps), refs=np.array(refs), seconds=seconds, **{f"lp{i}": x for i, x in enumerate(lps)})
    d = loaded.config.decode
    fusion = loaded.fusion(d)
    print(f"{len(lps)} utterances, {seconds / 60:.1f} min of audio; beam {d.beam}, token_floor {d.token_floor}, "
          f"blank_skip {d.blank_skip}; LM weight {d.lm_weight}, bonus {d.lm_bonus}")
    kinds = {"none": None, "fusion": fusion}
    rows = [(name, kinds[k]) for name in args.searches.split(",") for k in args.lm_kinds.split(",")]
    if args.arpa:
        words = arpa_words(loaded.tokenizer.itos, loaded.lm.bos, loaded.lm.eos)
        rows.append(("native", KenLMFusion(args.arpa, words, d.lm_weight)))
    for name, lm in rows:
        if True:
            start, cpu, hyps = time.perf_counter(), time.process_time(), []
            for lp in lps:
                best = SEARCHES[name](lp[None], None, beam=d.beam, blank_skip=d.blank_skip, lm=lm,
                                      token_floor=d.token_floor or None)[0][0]
                hyps.append(loaded.tokenizer.decode(best.tokens))
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"{name:8s} {type(lm).__name__ if lm else 'no LM':12s} wall {took:7.2f} s  CPU {cpu:7.2f} s  "
                  f"search RTF (CPU) {cpu / seconds:.4f}  "
                  f"WER {100 * wer(refs, hyps).rate:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
