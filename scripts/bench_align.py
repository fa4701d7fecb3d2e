"""Word boundary error of ``s2s-media align`` on speech whose word boundaries are known.

Each word is synthesised alone by espeak-ng (voices in turn), trimmed to its first and last sample above
-60 dBFS, and the words are joined with random silences of 0.1-0.6 s: the true start and end of every
word are known to the sample. The recording is aligned whole (one ``forced_align`` pass) and in windows
(the anchor search), and the absolute differences between aligned and true boundaries are reported.

    python scripts/bench_align.py --words 200 --window 10 --markdown
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from s2s_media.data.synthetic_speech import source_paragraphs
from s2s_media.frontend.audio import SAMPLE_RATE as SR, load_audio
from s2s_media.inference.align import AlignOptions, Aligner
from s2s_media.inference.checkpoint import bundled_model_path, load_model_file
from s2s_media.text.normalize import normalize_text

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-us+m4"]


def recording(n_words: int, seed: int, tmp: Path) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """``(wav (samples,), [(word, start s, end s)])`` of ``n_words`` words of the fortunes text."""
    rng = np.random.default_rng(seed)
    words = []
    for paragraph in source_paragraphs("fortunes"):
        words += normalize_text(paragraph).split()
        if len(words) >= n_words:
            break
    parts, truth, pos = [np.zeros(SR // 2, np.float32)], [], SR // 2
    for i, word in enumerate(words[:n_words]):
        raw = tmp / "w.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-w", str(raw), word], check=True)
        x = load_audio(raw)
        loud = np.nonzero(np.abs(x) > 1e-3)[0]
        x = x[loud[0]: loud[-1] + 1]
        gap = int(rng.uniform(0.1, 0.6) * SR)
        truth.append((word, pos / SR, (pos + len(x)) / SR))
        parts += [x, np.zeros(gap, np.float32)]
        pos += len(x) + gap
    return np.concatenate(parts), truth


def score(record: dict, truth: list[tuple[str, float, float]]) -> dict:
    starts, ends = [], []
    for (_, s, e), w in zip(truth, record["words"]):
        if w["aligned"]:
            starts.append(abs(w["start"] - s))
            ends.append(abs(w["end"] - e))
    both = np.array(starts + ends)
    return {"aligned": f"{len(starts)}/{len(truth)}", "median_ms": 1000 * np.median(both),
            "start_median_ms": 1000 * np.median(starts), "end_median_ms": 1000 * np.median(ends),
            "p90_ms": 1000 * np.percentile(both, 90)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--words", type=int, default=200)
    p.add_argument("--window", type=float, default=10.0, help="window of the windowed run (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        wav, truth = recording(args.words, args.seed, Path(tmp))
    text = " ".join(w for w, _, _ in truth)
    loaded = load_model_file(bundled_model_path("asr"))
    rows = []
    for name, window in (("whole", len(wav) / SR + 1), (f"{args.window:g} s windows", args.window)):
        aligner = Aligner(loaded, options=AlignOptions(window_s=window))
        t = time.perf_counter()
        record = aligner.align_array(wav, text)
        wall = time.perf_counter() - t
        rows.append({"run": name, "audio_s": len(wav) / SR, "windows": aligner.windows,
                     "longest_window_s": aligner.longest_window_s, "wall_s": wall, **score(record, truth),
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    if args.markdown:
        keys = list(rows[0])
        print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in rows:
            print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
