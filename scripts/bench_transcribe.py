#!/usr/bin/env python3
"""Speed and accuracy of ``s2s-media transcribe`` against pocketsphinx, on one set of files, in one run.

    python scripts/bench_transcribe.py                                  # the synthetic test split, bundled model
    python scripts/bench_transcribe.py --natural                        # its natural-voice part only
    python scripts/bench_transcribe.py --manifest M --model CKPT --decoding ctc_greedy --markdown

The test split's espeak-ng and flite voices throw pocketsphinx off (it was built for human
speech), which flatters the ratio; ``--natural`` keeps the neural voices (Piper, hibari:
``voice_family.is_natural_voice``), which it handles well. Report both.

Every configuration runs in its own child process, so its peak memory is that process's own
``ru_maxrss`` (``getrusage(RUSAGE_SELF)`` at its end; tracemalloc would miss torch's allocations)
and one configuration cannot warm another's caches:

- ``s2s-media (torch), 1 thread``: ``torch.set_num_threads(1)``, audio loaded in the same thread;
- ``s2s-media (torch), N threads``: all cores for torch, one audio-loading thread;
- ``s2s-media (onnx), 1 and N threads``: the same model on ``--runtime onnx`` (the bundled model's ONNX form,
  or ``--model``'s), onnxruntime's intra-op threads set so; this child never imports torch. Its WER must be
  within ``TARGET_ONNX_WER_POINTS`` of the torch path's on the same files;
- ``pocketsphinx, 1 thread``: its bundled US English model (the ``Decoder`` defaults), 16 kHz PCM16;
- ``pocketsphinx, N processes``: it has no threads, so N decoders each take every N-th file.

Each child loads its model and decodes one file untimed (warm-up), then times the whole set,
reading the audio included (libsndfile for both; the pocketsphinx child never imports torch, so
its memory is its own). RTF = wall seconds / audio seconds. WER and CER use the project's normaliser on both sides. Prints a table and the ratios
(speed: pocketsphinx RTF / ours at the same thread count; WER: ours / pocketsphinx), checks the
issue's targets, and writes everything (hypotheses included) to ``--json``. Install the peer with
``pip install 's2s-media[bench]'``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT / "recipes/synthetic_speech/data/test.jsonl"
TARGET_RTF = 0.02        # ours, 1 thread, default decoding
TARGET_SPEEDUP = 30.0    # ours vs pocketsphinx, same run, one thread (issue #12)
TARGET_WER_RATIO = 0.5   # ours / pocketsphinx
TARGET_ONNX_WER_POINTS = 0.2   # |WER on the ONNX runtime - WER on torch|, in points (issue #12)
RUNTIMES = ("torch", "onnx")


# --------------------------------------------------------------------------- children
# A child reads the file list the parent wrote, prints {"hyps", "durations", "wall_s", ...} as JSON,
# and imports only what its system needs: the pocketsphinx child never imports torch.
def child_ours(args, paths: list[str]) -> dict:
    if args.runtime == "torch":
        import torch
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
    from s2s_media import load_model
    from s2s_media.inference.inputs import Item
    items = [Item(p, Path(p).stem) for p in paths]
    model = load_model(args.model, "cpu", task="asr", runtime=args.runtime, threads=args.threads)
    tr = model.transcriber(decoding=args.decoding, workers=0 if args.threads == 1 else 1)
    list(tr.run(items[:1]))  # warm-up, untimed
    start = time.perf_counter()
    recs = [r for _, r in tr.run(items)]
    wall = time.perf_counter() - start
    failed = [r["error"] for r in recs if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} files failed, e.g. {failed[0]}")
    return {"hyps": [r["text"] for r in recs], "durations": [r["duration"] for r in recs], "wall_s": wall,
            "decoding": tr.method, "beam": tr.dcfg.beam, "model": str(args.model or "bundled"),
            "runtime": args.runtime,
            "lm": (f"{tr.lm.lm.order}-gram LM, weight {tr.lm.weight:g}, bonus {tr.lm.bonus:g}, "
                   f"rescoring the best {tr.dcfg.rescore_nbest}") if tr.lm is not None else "no LM"}


def _read_pcm16(path: str) -> tuple[bytes, float]:
    """16 kHz mono PCM16 bytes of a file, and its duration (resampled with soxr only when needed)."""
    import numpy as np
    import soundfile as sf
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if sr != 16000:
        import soxr
        wav = soxr.resample(wav, sr, 16000)
    return (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes(), len(wav) / 16000


def _sphinx_decode(paths: list[str]) -> list[tuple[str, float]]:
    from pocketsphinx import Decoder
    decoder = Decoder(samprate=16000, loglevel="FATAL")  # the bundled US English model
    out = []
    for p in paths:
        pcm, seconds = _read_pcm16(p)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        out.append((hyp.hypstr if hyp else "", seconds))
    return out


def child_sphinx(args, paths: list[str]) -> dict:
    import resource
    from concurrent.futures import ProcessPoolExecutor

    import pocketsphinx
    if args.threads == 1:
        _sphinx_decode(paths[:1])  # warm-up: model load and first utterance
        start = time.perf_counter()
        res = _sphinx_decode(paths)
        wall = time.perf_counter() - start
        workers_mb = 0.0
    else:
        with ProcessPoolExecutor(args.threads) as pool:
            list(pool.map(_sphinx_decode, [paths[:1]] * args.threads))  # start and warm the workers
            start = time.perf_counter()
            parts = list(pool.map(_sphinx_decode, [paths[k::args.threads] for k in range(args.threads)]))
            wall = time.perf_counter() - start
        res = [None] * len(paths)
        for k, part in enumerate(parts):
            res[k::args.threads] = part
        # the workers are processes of their own: count each at the largest one's peak (an upper bound)
        workers_mb = args.threads * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"hyps": [h for h, _ in res], "durations": [d for _, d in res], "wall_s": wall,
            "pocketsphinx": getattr(pocketsphinx, "__version__", "?"), "workers_rss_mb": workers_mb}


# --------------------------------------------------------------------------- parent
def load_set(manifest: str, limit: int, natural: bool = False) -> tuple[list[str], list[str]]:
    """(audio paths, reference texts) of a manifest's entries (whole files only); ``natural``: only
    those spoken by a neural voice."""
    from s2s_media.data.manifest import read_manifest
    from s2s_media.data.voice_family import is_natural_voice
    records = [r for r in read_manifest(manifest) if not natural or is_natural_voice(r.speaker or "")]
    records = records[: limit or None]
    if not records:
        raise SystemExit(f"{manifest}: no entries" + (" spoken by a natural (Piper, hibari) voice" if natural else ""))
    if any(r.offset for r in records):
        raise SystemExit(f"{manifest}: entries with an offset are not supported here; use whole files")
    missing = [r.audio for r in records if not Path(r.audio).is_file()]
    if missing:
        raise SystemExit(f"{manifest}: {len(missing)} audio files are missing, e.g. {missing[0]}")
    return [r.audio for r in records], [r.text for r in records]


def run_child(system: str, threads: int, args, files_json: str, refs: list[str], runtime: str = "torch") -> dict:
    """Run one configuration in a fresh process; returns its scores, speed and peak RSS (MB)."""
    from s2s_media.metrics import cer, wer
    cmd = [sys.executable, __file__, "--child", system, "--threads", str(threads), "--files", files_json,
           "--runtime", runtime]
    if args.model:
        cmd += ["--model", str(args.model)]
    if args.decoding:
        cmd += ["--decoding", args.decoding]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{system} ({runtime}, {threads} threads) failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    hyps, audio = res.pop("hyps"), sum(res.pop("durations"))
    return {"system": system, "threads": threads, "files": len(hyps), "audio_s": audio, "rtf": res["wall_s"] / audio,
            "wer": wer(refs, hyps).rate, "cer": cer(refs, hyps).rate,
            "peak_rss_mb": res.pop("self_rss_mb") + res.pop("workers_rss_mb", 0.0), **res,
            "hyps": [{"ref": r, "hyp": h} for r, h in zip(refs, hyps)]}


def machine() -> dict:
    import torch
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "os": platform.platform()}


def table(rows: list[dict], markdown: bool) -> str:
    head = ["system", "threads", "files", "audio (s)", "wall (s)", "RTF", "WER", "CER", "peak RSS (MB)"]
    lines = [[r["system"], str(r["threads"]), str(r["files"]), f"{r['audio_s']:.1f}", f"{r['wall_s']:.2f}",
              f"{r['rtf']:.4f}", f"{100 * r['wer']:.2f}%", f"{100 * r['cer']:.2f}%", f"{r['peak_rss_mb']:.0f}"]
             for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(x) + " |" for x in lines])
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    fmt = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(x) for x in lines])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="JSONL manifest (default: synthetic test split)")
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    p.add_argument("--decoding", help="our search method (default: the model's)")
    p.add_argument("--limit", type=int, default=0, help="only the first N files (0 = all)")
    p.add_argument("--natural", action="store_true",
                   help="only the files spoken by natural-sounding (neural) voices, fair to pocketsphinx")
    p.add_argument("--threads", type=int, default=0, help="all-threads configuration's thread count (default: cores)")
    p.add_argument("--runtimes", default="torch,onnx", type=lambda v: [r for r in v.split(",") if r],
                   help="what runs our model, comma-separated from torch, onnx; the first one's rows are checked "
                        "against the targets (default: %(default)s)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help=argparse.SUPPRESS)
    p.add_argument("--skip-pocketsphinx", action="store_true", help="measure only s2s-media")
    p.add_argument("--json", default="bench_transcribe.json", help="where to write the results")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown, for docs/benchmarks.md")
    p.add_argument("--child", choices=["ours", "pocketsphinx"], help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        import resource
        paths = json.loads(Path(args.files).read_text())
        res = (child_ours if args.child == "ours" else child_sphinx)(args, paths)
        res["self_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return 0

    unknown = [r for r in args.runtimes if r not in RUNTIMES]
    if unknown or not args.runtimes:
        raise SystemExit(f"--runtimes {','.join(args.runtimes)}: choose from {', '.join(RUNTIMES)}")
    if not args.skip_pocketsphinx:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            raise SystemExit("pocketsphinx is not installed: pip install 's2s-media[bench]' "
                             "(or pass --skip-pocketsphinx)") from None
    import tempfile
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: the machine is busy (load average {load:.1f}); timings will be pessimistic",
              file=sys.stderr)
    paths, refs = load_set(args.manifest, args.limit, args.natural)
    files = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(paths, files)
    files.close()
    n = args.threads or os.cpu_count() or 1
    configs = [("ours", runtime, t) for runtime in args.runtimes for t in (1, n)]
    if not args.skip_pocketsphinx:
        configs += [("pocketsphinx", "", 1), ("pocketsphinx", "", n)]
    rows = []
    try:
        for system, runtime, threads in dict.fromkeys(configs):
            print(f"running {system} {runtime} on {threads} thread(s)...", file=sys.stderr, flush=True)
            rows.append(run_child(system, threads, args, files.name, refs, runtime or "torch"))
    finally:
        os.unlink(files.name)
    for r in rows:
        r["system"] = f"s2s-media ({r['runtime']})" if r["system"] == "ours" else "pocketsphinx"
    print(table(rows, args.markdown))

    by_runtime = {rt: {r["threads"]: r for r in rows if r["system"] == f"s2s-media ({rt})"} for rt in args.runtimes}
    ours = by_runtime[args.runtimes[0]]
    peer = {r["threads"]: r for r in rows if r["system"] == "pocketsphinx"}
    summary = {"machine": {**machine(), "load_average_at_start": load}, "manifest": str(args.manifest),
               "natural_voices_only": args.natural, "results": rows, "ratios": {}}
    one = ours[1]
    checks = [f"RTF on 1 thread {one['rtf']:.4f} ({one['runtime']}; target <= {TARGET_RTF}): "
              f"{'met' if one['rtf'] <= TARGET_RTF else 'NOT met'}"]
    if "onnx" in by_runtime and "torch" in by_runtime:
        points = 100 * abs(by_runtime["onnx"][1]["wer"] - by_runtime["torch"][1]["wer"])
        summary["ratios"]["onnx_wer_points"] = points
        checks.append(f"WER on the ONNX runtime {100 * by_runtime['onnx'][1]['wer']:.2f}% vs torch "
                      f"{100 * by_runtime['torch'][1]['wer']:.2f}%: {points:.2f} points apart (target <= "
                      f"{TARGET_ONNX_WER_POINTS}): {'met' if points <= TARGET_ONNX_WER_POINTS else 'NOT met'}")
        for t in sorted(peer):
            checks.append(f"speed of the ONNX runtime vs pocketsphinx on {t} thread(s): "
                          f"{peer[t]['rtf'] / by_runtime['onnx'][t]['rtf']:.1f}x")
    for t in sorted(peer):
        speed = peer[t]["rtf"] / ours[t]["rtf"]
        summary["ratios"][f"speedup_{t}_threads"] = speed
        checks.append(f"speed vs pocketsphinx on {t} thread(s): {speed:.1f}x"
                      + (f" (target >= {TARGET_SPEEDUP:g}x): {'met' if speed >= TARGET_SPEEDUP else 'NOT met'}"
                         if t == 1 else ""))
    if 1 in peer:
        ratio = one["wer"] / peer[1]["wer"] if peer[1]["wer"] else float("inf")
        summary["ratios"]["wer_ratio"] = ratio
        checks.append(f"WER {100 * one['wer']:.2f}% vs pocketsphinx {100 * peer[1]['wer']:.2f}%: ratio {ratio:.2f} "
                      f"(target <= {TARGET_WER_RATIO}): {'met' if ratio <= TARGET_WER_RATIO else 'NOT met'}")
    print("\n".join(checks))
    m = summary["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}; "
          f"model {one['model']}, decoding {one['decoding']} (beam {one['beam']}, {one['lm']})")
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"results in {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
