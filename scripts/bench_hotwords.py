#!/usr/bin/env python
"""Hotword biasing on a set made for it: recall of rare words and names, WER on distractors, cost.

The set: rare words and names (none in the bundled LM's training text, most spelled in ways a
character model does not guess), each spoken in carrier sentences, and distractor sentences in
the same carriers with common words instead. Voices are espeak-ng families the bundled model never
heard in training (its test split's m7/m8/Nguyen, rob/robert/quincy and Andrea; its dev split's m1
and f3 read the tuning set, with other words), in every English accent; never a reserved voice.

Every utterance is decoded once by the encoder; then the search (the model's default: CTC prefix
beam search with its LM, attention rescoring of the best 4) runs without hotwords and with the whole
list of the split's hotwords, and its CPU time is measured alone. ``--boosts`` runs the dev split
(a different word list and voices) at several boosts, to choose the default, before the test split.
``--searches native`` also runs flashlight's search, hotwords going through its custom-LM interface
(the comparison behind ``decoding.search.ctc_search_for``, which runs hotwords in the Python search).

    nice -n 10 python scripts/bench_hotwords.py --work /tmp/hotwords
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from s2s_media.data.synthetic_speech import Prosody, espeak_voice_ids, is_reserved, make_voice
from s2s_media.decoding.context import DEFAULT_BOOST, Hotword, compile_hotwords
from s2s_media.decoding.native import native_nbest_batch
from s2s_media.frontend.audio import SAMPLE_RATE, resample
from s2s_media.frontend.logmel import LogMel
from s2s_media.inference.checkpoint import bundled_model_path, load_model_file
from s2s_media.inference.evaluate import hotword_recall
from s2s_media.inference.pipeline import Searcher
from s2s_media.metrics import wer

TEST_WORDS = ["kubernetes", "grafana", "terraform", "okonkwo", "siobhan", "takahashi", "ljubljana", "quetzal",
              "zanzibar", "oaxaca", "rasputin", "rachmaninoff", "wojciech", "kalashnikov", "xylophone",
              "bratislava", "anaconda", "pterodactyl", "mozambique", "ulaanbaatar", "fjord", "gazpacho",
              "hiroshima", "babushka", "kinshasa", "schwarzenegger", "tsunami", "ratatouille", "kilimanjaro",
              "marrakesh"]
DEV_WORDS = ["postgres", "nairobi", "guacamole", "dostoevsky", "tegucigalpa", "kowalski", "reykjavik", "quinoa",
             "tagliatelle", "vladivostok", "didgeridoo", "hyderabad"]
CARRIERS = ["please ask {} about the report", "we drove to {} after lunch", "she wrote {} on the board",
            "i think {} is the answer", "the letter from {} came today", "tell me more about {} tomorrow"]
DISTRACTORS = ["teacher", "the market", "my brother", "the garden", "a new car", "the weather", "dinner",
               "the river", "her friend", "the station"]
TEST_FAMILIES = [("m7", "m8", "Nguyen"), ("rob", "robert", "quincy"), ("Andrea",)]
DEV_FAMILIES = [("m1",), ("f3",)]


def plan(words: list[str], families, per_word: int, distractors: int, seed: int) -> list[dict]:
    """Utterances ``{"id", "text", "voice", "rate", "semitones"}``: each word in ``per_word`` carriers, plus
    ``distractors`` carrier sentences with common words."""
    rng = random.Random(seed)
    voices = [v for v in espeak_voice_ids(families) if not is_reserved(v)]
    rows = []
    for w in words:
        for c in rng.sample(CARRIERS, per_word):
            rows.append({"text": c.format(w), "hotword": w})
    for _ in range(distractors):
        rows.append({"text": rng.choice(CARRIERS).format(rng.choice(DISTRACTORS)), "hotword": None})
    for i, r in enumerate(rows):
        r.update(id=f"u{i:03d}", voice=rng.choice(voices), rate=round(rng.uniform(0.85, 1.1), 3),
                 semitones=round(rng.uniform(-2, 2), 2))
    return rows


def synthesize(rows: list[dict], out: Path) -> None:
    """Each row's audio at ``out/<id>.wav`` (16 kHz, peak -3 dBFS, 0.15 s of silence around); kept if present."""
    out.mkdir(parents=True, exist_ok=True)
    pad = np.zeros(int(0.15 * SAMPLE_RATE), np.float32)
    for r in rows:
        path = out / f"{r['id']}.wav"
        r["audio"] = str(path)
        if path.exists():
            continue
        wav, sr = make_voice(r["voice"]).synthesize(r["text"], Prosody(r["rate"], r["semitones"]))
        wav = resample(wav.astype(np.float32), sr)
        wav = 0.7 * wav / max(1e-6, float(np.abs(wav).max()))
        sf.write(path, np.concatenate([pad, wav, pad]), SAMPLE_RATE)


def encode(loaded, searcher: Searcher, rows: list[dict]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], float]:
    """Per utterance its encoder output ``(1, T, d)`` and mask ``(1, T)`` (encoded once), and the CPU
    seconds of features and encoder together."""
    logmel = LogMel(loaded.config.model.n_mels)
    out = []
    t0 = time.process_time()
    with torch.inference_mode():
        for r in rows:
            wav, _ = sf.read(r["audio"], dtype="float32")
            feats = logmel(torch.from_numpy(wav)[None])
            out.append(searcher.encode(feats, torch.tensor([feats.size(1)])))
    return out, time.process_time() - t0


def native_rescoring(searcher: Searcher, memory, mask, context) -> list[int]:
    """The model's default method with hotwords in flashlight's search: what the searches would run if
    they did not take the Python search for a context (``decoding.search.ctc_search_for``)."""
    d = searcher.decode
    lists = native_nbest_batch(searcher.model.ctc(memory), mask.sum(1), beam=d.beam, blank_skip=d.blank_skip,
                               lm=searcher.lm, token_floor=d.token_floor or None, context=context)
    return searcher.rescore(memory, mask, lists)[0][0].tokens


def run(loaded, dcfg, encoded, rows, context, phrases) -> dict:
    """Search every utterance with ``context``: recall on the hotword rows, WER on the distractors, CPU s."""
    searcher = Searcher(loaded, dcfg, task="asr", context=context)
    forced = context is not None and dcfg.ctc_search == "native"
    hyps = []
    cpu = 0.0
    with torch.inference_mode():
        for memory, mask in encoded:
            t0 = time.process_time()
            tokens = native_rescoring(searcher, memory, mask, context) if forced else \
                searcher.search(memory, mask)[0].tokens
            cpu += time.process_time() - t0
            hyps.append(loaded.tokenizer.decode(tokens))
    hot = [i for i, r in enumerate(rows) if r["hotword"]]
    dis = [i for i, r in enumerate(rows) if not r["hotword"]]
    rec = hotword_recall([rows[i]["text"] for i in hot], [hyps[i] for i in hot], phrases)
    fa = hotword_recall([rows[i]["text"] for i in dis], [hyps[i] for i in dis], phrases)["false_alarms"]
    return {"recall": rec["recall"], "hits": rec["hits"], "total": rec["total"],
            "hotword_wer": wer([rows[i]["text"] for i in hot], [hyps[i] for i in hot]).rate,
            "distractor_wer": wer([rows[i]["text"] for i in dis], [hyps[i] for i in dis]).rate,
            "distractor_false_alarms": fa, "cpu_s": cpu, "hyps": hyps}


def evaluate_split(loaded, base, rows, words, boosts, searches, repeats) -> list[dict]:
    encoded, encoder_s = encode(loaded, Searcher(loaded, base, task="asr"), rows)
    print(f"features and encoder: {encoder_s:.2f} s CPU", flush=True)
    out = []
    for search in searches:
        dcfg = base.override(ctc_search=search)
        for boost in [None, *boosts]:
            context, phrases = None, words
            if boost is not None:
                compiled = compile_hotwords(loaded.tokenizer, [Hotword(w, boost) for w in words])
                context, phrases = compiled.context, compiled.phrases
            best = None
            for _ in range(repeats):           # the least CPU of the repeats: the loaded machine's noise is additive
                r = run(loaded, dcfg, encoded, rows, context, phrases)
                best = r if best is None or r["cpu_s"] < best["cpu_s"] else best
            best.update(search=search, boost=boost, encoder_cpu_s=encoder_s)
            out.append(best)
            print(f"{search:7s} boost {str(boost):5s} recall {100 * best['recall']:5.1f}% "
                  f"({best['hits']}/{best['total']})  hotword-sentence WER {100 * best['hotword_wer']:5.1f}%  "
                  f"distractor WER {100 * best['distractor_wer']:5.2f}% (false alarms "
                  f"{best['distractor_false_alarms']})  search CPU {best['cpu_s']:6.2f} s", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(bundled_model_path("asr")))
    p.add_argument("--work", default="/tmp/bench_hotwords", help="audio and results go here (audio is reused)")
    p.add_argument("--boosts", default="", help="comma list: tune on the dev split first (e.g. 1,1.5,2,3)")
    p.add_argument("--searches", default="python", help="comma list of python, native")
    p.add_argument("--repeats", type=int, default=2, help="searches of each setting; the least CPU is kept")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--lm-weight", type=float, help="the model's LM weight instead of its decode.lm_weight (0: off)")
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    loaded = load_model_file(args.model, quantize=True)
    base = loaded.config.decode.override(lm_weight=args.lm_weight)
    searches = args.searches.split(",")
    results = {}
    if args.boosts:
        dev = plan(DEV_WORDS, DEV_FAMILIES, 2, 16, args.seed + 1)
        synthesize(dev, work / "dev")
        print(f"dev: {len(dev)} utterances, {len(DEV_WORDS)} hotwords", flush=True)
        results["dev"] = evaluate_split(loaded, base, dev, DEV_WORDS, [float(b) for b in args.boosts.split(",")],
                                        ["python"], 1)
    test = plan(TEST_WORDS, TEST_FAMILIES, 2, 40, args.seed)
    synthesize(test, work / "test")
    seconds = sum(sf.info(r["audio"]).duration for r in test)
    print(f"test: {len(test)} utterances ({seconds:.0f} s of audio), {len(TEST_WORDS)} hotwords, "
          f"boost {DEFAULT_BOOST}", flush=True)
    results["test"] = evaluate_split(loaded, base, test, TEST_WORDS, [DEFAULT_BOOST], searches, args.repeats)
    results["test_audio_s"] = seconds
    (work / f"results{'' if args.lm_weight is None else f'_lm{args.lm_weight:g}'}.json").write_text(json.dumps({"rows": test, **results}, indent=1))
    print(f"results in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
