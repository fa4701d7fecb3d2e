#!/usr/bin/env python3
"""Torch against ONNX runtime on one model: size on disk, cold start to the first transcript, peak RSS, and
decoding speed and WER on one thread.

    python scripts/bench_onnx.py --onnx DIR                      # bundled model vs its ONNX export DIR
    python scripts/bench_onnx.py --model CKPT --onnx DIR --manifest M --limit 60 --json out.json

Every measurement runs in its own child process (peak RSS is that child's ``ru_maxrss`` from ``wait4``; the
parent imports no torch, since a child's peak counts what it shared with its parent before ``exec``):

- cold start: ``s2s-media transcribe FIRST_FILE --model M`` from process start to exit, its record printed;
- speed: a child loads the model (``load_model(..., runtime=...)``, one torch thread, one onnxruntime
  thread), decodes the first file untimed, then times the whole manifest (audio reading included) with the
  model's default decoding. RTF = wall seconds / audio seconds; WER with the project's scorer.

Make DIR with ``s2s-media export --format onnx CKPT DIR``.
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


def child(args) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from s2s_media.api import load
    from s2s_media.inference.inputs import discover
    items = discover([args.manifest])[: args.limit]
    model = load(args.model, "cpu", task="asr", runtime=args.runtime, threads=1)
    tr = model.transcriber(workers=0)
    list(tr.run(items[:1]))
    start = time.perf_counter()
    recs = [r for _, r in tr.run(items)]
    wall = time.perf_counter() - start
    return {"hyps": [r.get("text", "") for r in recs], "refs": [it.ref for it in items],
            "audio_s": sum(r.get("duration", 0.0) for r in recs), "wall_s": wall, "decoding": tr.method,
            "failed": sum("error" in r for r in recs)}


def child_no_torch(args) -> dict:
    """The ONNX graphs alone: numpy log-mels, the graphs, CTC greedy (the whole torch-free runtime, with the
    model's default decoding, LM and punctuation, is measured by scripts/bench_runtime.py)."""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchaudio", "torchvision"):
                raise ImportError("torch is blocked in this child")
    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import soundfile as sf

    from s2s_media.frontend.logmel_np import log_mel
    from s2s_media.inference.onnx_runtime import OnnxSpeechModel
    rt = OnnxSpeechModel(args.onnx, threads=1)
    wav, sr = sf.read(args.first, dtype="float32")
    assert sr == 16000, "this child reads 16 kHz files only"
    feats = log_mel(wav)[None]
    memory, n = rt.encode(feats, np.array([feats.shape[1]]))
    best = rt.ctc_log_probs(memory)[0, : n[0]].argmax(-1)
    tokens = [int(t) for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1])]
    return {"text": rt.tokenizer.decode(tokens), "torch_loaded": "torch" in sys.modules}


def run_measured(cmd: list[str], timeout: float) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process; its process group is killed on timeout."""
    import tempfile
    import threading
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, 9))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        timer.cancel()
        out.seek(0)
        err.seek(0)
        if status:
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().strip()[-500:]}")
        return wall, int(usage.ru_maxrss / 1024), out.read()


def size_mb(path: Path) -> float:
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--onnx", type=Path, required=True, help="its ONNX export (s2s-media export --format onnx)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--limit", type=int, default=60, help="first N entries of the manifest (default 60)")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--child", choices=["torch", "onnx", "no_torch"], help=argparse.SUPPRESS)
    p.add_argument("--first", help=argparse.SUPPRESS)
    p.add_argument("--no-torch-only", action="store_true",
                   help="measure only the torch-free runtime (numpy features, ONNX graphs, CTC greedy)")
    p.add_argument("--runtime", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "no_torch":
        print(json.dumps(child_no_torch(args)))
        return 0
    if args.child:
        args.model = args.model if args.child == "torch" else args.onnx
        print(json.dumps(child(args)))
        return 0
    # the parent never imports torch: a forked child's peak RSS starts from its parent's
    from s2s_media.metrics import wer
    assert "torch" not in sys.modules
    ckpt = args.model or ROOT / "s2s_media/assets/asr_default.pt"
    with open(args.manifest) as f:
        first = str(args.manifest.parent / json.loads(f.readline())["audio"])
    wall, rss, out = run_measured([sys.executable, __file__, "--child", "no_torch", "--onnx", str(args.onnx),
                                   "--first", first], 600)
    res = json.loads(out.splitlines()[-1])
    print(f"torch-free runtime (numpy log-mels, ONNX, CTC greedy), one file from a cold process: {wall:.2f} s, "
          f"peak RSS {rss} MB, torch imported: {res['torch_loaded']}, text: {res['text']!r}")
    if args.no_torch_only:
        return 0
    rows = {}
    for name, model in (("torch", ckpt), ("onnx", args.onnx)):
        cold, cold_rss, out = run_measured([sys.executable, "-m", "s2s_media.cli.main", "transcribe", first,
                                            "--model", str(model), "--runtime", name], 1200)
        assert json.loads(out.splitlines()[0])["text"] is not None
        _, rss, out = run_measured([sys.executable, __file__, "--child", name, "--model", str(ckpt), "--onnx",
                                    str(args.onnx), "--manifest", str(args.manifest), "--limit", str(args.limit),
                                    "--runtime", name], 7200)
        res = json.loads(out.splitlines()[-1])
        rows[name] = {"size_mb": round(size_mb(Path(model)), 2), "cold_start_s": round(cold, 2),
                      "cold_rss_mb": cold_rss, "decode_rss_mb": rss, "rtf": round(res["wall_s"] / res["audio_s"], 4),
                      "wer": round(100 * wer(res["refs"], res["hyps"]).rate, 2), "files": len(res["hyps"]),
                      "audio_s": round(res["audio_s"], 1), "failed": res["failed"], "decoding": res["decoding"],
                      "hyps": res["hyps"]}
    same = sum(a == b for a, b in zip(rows["torch"]["hyps"], rows["onnx"]["hyps"]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; {rows['torch']['files']} files, {rows['torch']['audio_s']} s of audio")
    print("| runtime | size MB | cold start s | cold RSS MB | RTF (1 thread) | decode RSS MB | WER % |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['size_mb']} | {r['cold_start_s']} | {r['cold_rss_mb']} | {r['rtf']} | "
              f"{r['decode_rss_mb']} | {r['wer']} |")
    print(f"identical transcripts: {same} of {rows['torch']['files']}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "identical": same, "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
