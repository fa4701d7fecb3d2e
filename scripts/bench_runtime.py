#!/usr/bin/env python3
"""The torch-free runtime's start-up and memory: ``s2s-media --help``, a cold ``transcribe`` of one short file,
and the RSS of ``serve``, each in an environment where torch cannot be imported (``tests/runtime_env.py``).

    python scripts/bench_runtime.py                      # the bundled model, exported to ONNX in a temp dir
    python scripts/bench_runtime.py --onnx DIR --audio short.wav --repeat 5

- ``--help``: wall seconds of ``python -m s2s_media.cli.main --help`` (what the ``s2s-media`` script runs),
  median of ``--repeat`` runs (the issue's target: <= 0.3 s);
- cold transcribe: wall seconds from process start to exit of ``transcribe AUDIO --model DIR`` with its record
  on stdout (model loading, punctuation and the LM included), median of ``--repeat`` runs (target <= 1.5 s);
- serve: ``serve --model DIR``; once it listens, one protocol-v1 session streams AUDIO and gets its final,
  then the server's RSS (``VmRSS``) and peak (``VmHWM``) are read (target <= 250 MB).

AUDIO defaults to a 2 s espeak-ng sentence. The export (``s2s-media export --format onnx`` of
``s2s_media/assets/asr_default.pt``, never modified) runs in this process's environment, with torch.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from runtime_env import runtime_env, torch_free_python  # noqa: E402 - the tests' torch-free environment
from server.client import STOP  # noqa: E402


def timed(cmd: list[str], env: dict, repeat: int) -> tuple[float, list[float], str]:
    """Median wall seconds of ``cmd`` over ``repeat`` runs, every run's, and the last run's stdout."""
    walls, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        walls.append(time.perf_counter() - start)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-800:]}")
        out = proc.stdout
    return statistics.median(walls), walls, out


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process ``pid`` in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def serve_rss(python: str, env: dict, model: Path, audio: Path) -> dict:
    """Start ``serve``, stream ``audio`` through one session, read the server's memory."""
    import numpy as np
    import soundfile as sf
    from websockets.asyncio.client import connect

    proc = subprocess.Popen([python, "-m", "s2s_media.cli.main", "serve", "--port", "0", "--model", str(model)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env={**env, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        start = time.perf_counter()
        for line in proc.stderr:
            if m := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
                break
        else:
            raise SystemExit("serve exited before listening")
        listening = time.perf_counter() - start
        wav, _ = sf.read(audio, dtype="float32")
        data = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()

        async def session() -> str:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
                for i in range(0, len(data), 3200):
                    await ws.send(data[i:i + 3200])
                await ws.send(STOP)
                finals = [json.loads(m) for m in [m async for m in ws] if isinstance(m, str)]
                return " ".join(m["text"] for m in finals if m.get("type") == "final")

        text = asyncio.run(session())
        rss, peak = memory_mb(proc.pid)
        return {"listening_s": round(listening, 2), "rss_mb": round(rss, 1), "peak_mb": round(peak, 1),
                "final": text}
    finally:
        proc.kill()
        proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, help="an ONNX model directory (default: export the bundled model)")
    p.add_argument("--audio", type=Path, help="a short 16 kHz file (default: a 2 s espeak-ng sentence)")
    p.add_argument("--repeat", type=int, default=5, help="runs per timing, the median reported (default 5)")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_runtime.") as tmp:
        tmp = Path(tmp)
        model = args.onnx
        if model is None:
            model = tmp / "asr_default_onnx"
            subprocess.run([sys.executable, "-m", "s2s_media.cli.main", "export", "--format", "onnx",
                            str(ROOT / "s2s_media/assets/asr_default.pt"), str(model)], check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        audio = args.audio
        if audio is None:
            audio = tmp / "short.wav"
            subprocess.run(["espeak-ng", "-w", str(tmp / "raw.wav"), "the quick brown fox jumps over the dog"],
                           check=True)
            import soundfile as sf
            from s2s_media.frontend.audio import load_audio
            sf.write(audio, load_audio(tmp / "raw.wav"), 16000)
        python = str(torch_free_python(tmp / "env"))
        log = tmp / "blocked.log"
        env = runtime_env(ROOT, log)
        cli = [python, "-m", "s2s_media.cli.main"]
        help_s, help_runs, _ = timed(cli + ["--help"], env, args.repeat)
        cold_s, cold_runs, out = timed(cli + ["transcribe", str(audio), "--model", str(model)], env, args.repeat)
        record = json.loads(out.splitlines()[0])
        served = serve_rss(python, env, model, audio)
        blocked = log.read_text().split() if log.exists() else []
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
              "help_s": round(help_s, 3), "help_runs": [round(w, 3) for w in help_runs],
              "transcribe_cold_s": round(cold_s, 2), "transcribe_runs": [round(w, 2) for w in cold_runs],
              "audio_s": record["duration"], "text": record["text"], "serve": served,
              "torch_imports_attempted": blocked}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if not blocked else 1


if __name__ == "__main__":
    sys.exit(main())
