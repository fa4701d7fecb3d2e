#!/usr/bin/env python3
"""What ``--ray`` costs on one machine: ``s2s-media transcribe`` on the same files, plain (N threads) and on Ray
(N actors of one CPU each, on the local Ray the command starts: as many CPUs as the machine has).

    python scripts/bench_ray.py --limit 200                 # the synthetic test split, bundled model, N = 2

Each configuration is one ``s2s-media transcribe`` process, timed from start to exit (imports, model
loading, Ray's start and its actors' model loading included), and also by the command's own ``wall``
line (from the first file on; for Ray that still includes the actors starting). The two outputs must be
identical. Prints a markdown table and the Ray / plain ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT / "recipes/synthetic_speech/data/test.jsonl"


def _manifest(src: Path, limit: int, out: Path) -> float:
    """The first ``limit`` entries of ``src`` with absolute audio paths; returns their audio seconds."""
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()][:limit]
    for r in rows:
        r["audio"] = str((src.parent / r["audio"]).resolve())
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return sum(r["duration"] for r in rows)


def _run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    m = re.search(r"([\d.]+) s wall", proc.stdout + proc.stderr)
    return total, float(m.group(1)) if m else float("nan"), proc.stdout


def _differences(plain: Path, ray: Path) -> str:
    """``yes``, or how many records differ and in which fields (records matched by line)."""
    a, b = ([json.loads(line) for line in p.read_text().splitlines()] for p in (plain, ray))
    if len(a) != len(b):
        return f"no: {len(a)} records plain, {len(b)} on Ray"
    differ = [(x, y) for x, y in zip(a, b) if x != y]
    fields = sorted({k for x, y in differ for k in x.keys() | y.keys() if x.get(k) != y.get(k)})
    texts = sum(x.get("text") != y.get("text") for x, y in differ)
    return "yes" if not differ else (f"no: {len(differ)} of {len(a)} records differ, in {', '.join(fields)} "
                                     f"({texts} in their text)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--limit", type=int, default=200, help="first N entries (default %(default)s)")
    ap.add_argument("--cpus", type=int, default=2, help="threads of the plain run, actors of the Ray run")
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                    help="transcribe --runtime, for both runs (default: %(default)s)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio_s = _manifest(args.manifest, args.limit, tmp / "in.jsonl")
        base = [sys.executable, "-m", "s2s_media.cli.main", "transcribe", str(tmp / "in.jsonl"), "--device", "cpu",
                *(["--model", args.model] if args.model else []), "--runtime", args.runtime]
        plain = _run([*base, "--workers", str(args.cpus), "--out", str(tmp / "plain.jsonl")],
                     {**env, "OMP_NUM_THREADS": str(args.cpus)})
        ray = _run([*base, "--out", str(tmp / "ray.jsonl"), "--ray-actors", str(args.cpus), "--ray"], env)
        same = _differences(tmp / "plain.jsonl", tmp / "ray.jsonl")
    print(f"{args.limit} files, {audio_s:.1f} s of audio, runtime {args.runtime}; outputs identical: {same}\n")
    print("| run | process wall (s) | transcribe wall (s) | RTF (transcribe wall) |\n| --- | --- | --- | --- |")
    for name, (total, wall, _) in ((f"plain, {args.cpus} threads", plain), (f"Ray, {args.cpus} actors", ray)):
        print(f"| {name} | {total:.1f} | {wall:.1f} | {wall / audio_s:.4f} |")
    print(f"\nRay / plain: {ray[0] / plain[0]:.2f}x process wall, {ray[1] / plain[1]:.2f}x transcribe wall")
    if same != "yes":
        raise SystemExit("the outputs differ")


if __name__ == "__main__":
    main()
