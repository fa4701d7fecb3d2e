#!/usr/bin/env python
"""Calibrate a model's word confidences: fit Platt scaling on a dev set, measure ECE on a test set.

A word's raw confidence is the minimum CTC posterior of its tokens. Each word of the model's
transcript is labelled right (aligned to an equal reference word) or wrong; Platt scaling
``sigmoid(a * logit(c) + b)`` is fitted to those labels on the dev set (logistic regression,
Newton's method), and the expected calibration error (10 equal-width bins, weighted by words) is
measured before and after on both sets. The result is written beside the model
(``MODEL.calibration.json``), where the loaders find it.

The sets: WordNet example sentences (text neither the bundled model nor its LM was trained on),
read by espeak-ng voice families the bundled model never heard: its dev split's (m1, f3) for the
dev set, its test split's (m7/m8/Nguyen, rob/robert/quincy, Andrea) for the test set; or the first
utterances of two manifests, such as a recipe's dev and test splits (``--dev-manifest``,
``--test-manifest``: the bundled model's own held-out voices and sentences).

    nice -n 10 python scripts/calibrate_confidence.py --work /tmp/calibration --write
    python scripts/calibrate_confidence.py --dev-manifest data/dev.jsonl --test-manifest data/test.jsonl \
        --dev 400 --test 600 --write
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import jiwer
import numpy as np
import torch

from bench_hotwords import DEV_FAMILIES, TEST_FAMILIES, synthesize
from s2s_media.data.synthetic_speech import clean_sentence, espeak_voice_ids, is_reserved, read_wordnet_examples
from s2s_media.decoding.timing import ConfidenceCalibration
from s2s_media.data.manifest import read_manifest
from s2s_media.inference.checkpoint import bundled_model_path, load_model_file
from s2s_media.inference.inputs import Item
from s2s_media.inference.transcriber import TranscribeOptions, Transcriber
from s2s_media.text.normalize import normalize_text

BINS = 10


def plan(n: int, families, seed: int, skip: set[str]) -> list[dict]:
    """``n`` WordNet sentences (not in ``skip``), each read by a random voice of ``families``."""
    rng = random.Random(seed)
    sentences = [s for s in (clean_sentence(x, 4, 14) for x in read_wordnet_examples()) if s]
    rng.shuffle(sentences)
    voices = [v for v in espeak_voice_ids(families) if not is_reserved(v)]
    rows = []
    for text in sentences:
        if len(rows) == n:
            break
        text = normalize_text(text)
        if text in skip:
            continue
        rows.append({"id": f"c{len(rows):04d}", "text": text, "voice": rng.choice(voices),
                     "rate": round(rng.uniform(0.85, 1.1), 3), "semitones": round(rng.uniform(-2, 2), 2)})
    return rows


def manifest_rows(path: str, n: int) -> list[dict]:
    """The first ``n`` utterances of a manifest, as rows of ``id``, ``audio`` and normalised ``text``."""
    rows = read_manifest(path)[:n]
    return [{"id": r.id, "audio": str(r.audio), "text": normalize_text(r.text)} for r in rows]


def labelled_words(transcriber: Transcriber, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, float]:
    """Every hypothesis word's raw confidence and whether it is right; and the WER."""
    items = [Item(r["audio"], r["id"]) for r in rows]
    conf, right, refs, hyps = [], [], [], []
    for (item, rec), r in zip(transcriber.run(items), rows):
        words = rec.get("words", [])
        hyp = [w["word"] for w in words]
        refs.append(r["text"])
        hyps.append(" ".join(hyp))
        ok = np.zeros(len(hyp), bool)
        if hyp:
            for chunk in jiwer.process_words(r["text"], " ".join(hyp)).alignments[0]:
                if chunk.type == "equal":
                    ok[chunk.hyp_start_idx:chunk.hyp_end_idx] = True
        conf += [w["confidence"] for w in words]
        right += ok.tolist()
    return np.asarray(conf, float), np.asarray(right, float), jiwer.wer(refs, hyps)


def fit_platt(conf: np.ndarray, right: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Logistic regression of ``right`` on ``logit(conf)`` (Newton's method, tiny ridge)."""
    c = np.clip(conf, ConfidenceCalibration.EPS, 1 - ConfidenceCalibration.EPS)
    x = np.stack([np.log(c / (1 - c)), np.ones_like(c)], 1)
    w = np.array([1.0, 0.0])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-x @ w))
        grad = x.T @ (p - right) + 1e-6 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def ece(conf: np.ndarray, right: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the word-weighted mean |accuracy - mean confidence| over equal-width bins."""
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(right[m].mean() - conf[m].mean())
    return total / max(len(conf), 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(bundled_model_path("asr")))
    p.add_argument("--work", default="/tmp/calibration", help="audio goes here (reused)")
    p.add_argument("--dev", type=int, default=150, help="dev utterances (fitting)")
    p.add_argument("--test", type=int, default=150, help="test utterances (measuring)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dev-manifest", help="fit on the first --dev utterances of this manifest instead")
    p.add_argument("--test-manifest", help="measure on the first --test utterances of this manifest instead")
    p.add_argument("--write", action="store_true", help="write MODEL.calibration.json beside the model")
    args = p.parse_args()
    if bool(args.dev_manifest) != bool(args.test_manifest):
        p.error("--dev-manifest and --test-manifest go together")
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.dev_manifest:
        dev, test = manifest_rows(args.dev_manifest, args.dev), manifest_rows(args.test_manifest, args.test)
        fitted_on = f"the first {len(dev)} utterances of {args.dev_manifest}"
    else:
        test = plan(args.test, TEST_FAMILIES, args.seed, set())
        dev = plan(args.dev, DEV_FAMILIES, args.seed + 1, {r["text"] for r in test})
        synthesize(dev, work / "dev")
        synthesize(test, work / "test")
        fitted_on = f"{args.dev} utterances of WordNet sentences, espeak-ng families m1, f3"
    loaded = load_model_file(args.model)
    loaded.calibration = None                                # raw confidences
    transcriber = Transcriber(loaded, TranscribeOptions(punctuation=False, workers=0))
    report = {}
    sets = {}
    for name, rows in (("dev", dev), ("test", test)):
        conf, right, w = labelled_words(transcriber, rows)
        sets[name] = (conf, right)
        report[name] = {"utterances": len(rows), "words": int(len(conf)), "word_accuracy": float(right.mean()),
                        "wer": w, "ece_raw": ece(conf, right)}
        print(f"{name}: {len(rows)} utterances, {len(conf)} words, {100 * right.mean():.1f} % right, "
              f"WER {100 * w:.2f} %, ECE raw {ece(conf, right):.4f}", flush=True)
    a, b = fit_platt(*sets["dev"])
    cal = ConfidenceCalibration(a, b, fitted_on)
    for name, (conf, right) in sets.items():
        after = np.array([cal(c) for c in conf])
        report[name]["ece_calibrated"] = ece(after, right)
        print(f"{name}: ECE {report[name]['ece_raw']:.4f} -> {report[name]['ece_calibrated']:.4f} "
              f"(Platt a={a:.3f} b={b:.3f})", flush=True)
    if args.write:
        print(f"written: {cal.write(args.model, {'measured': report, 'bins': BINS})}")
    (work / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
