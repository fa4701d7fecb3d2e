#!/usr/bin/env python3
"""Benchmark the streaming server: latency, real-time factor and capacity for a few chunk sizes.

For each ``--chunk-sizes`` value it starts the real server (``server.App``, in process, on a free
port of 127.0.0.1) with that chunk size and drives it with real websocket clients (protocol v1):

* **one real-time session** (audio paced at 1x in 100 ms messages): first-partial latency (from
  the first audio message to the first partial), final latency (from ``stop`` to the last
  final), and the server's chunk latencies (arrival of the audio that completed a chunk -> end
  of its decoding; p50/p95/max);
* **RTF**: one session streamed as fast as the server takes it; wall time / audio time;
* **capacity**: N concurrent real-time sessions (starts spread over one chunk), N doubling
  from 1 and then bisected; N is sustained when the p95 chunk latency stays under
  ``--max-latency`` seconds. Reports the largest sustained N.

Results go to stdout as markdown. Example::

    python scripts/bench_stream.py --model recipes/synthetic_speech/exp/conformer/avg_best_5.pt

Audio: ``--audio WAV``, or by default a few sentences spoken by espeak-ng. The numbers depend on
what else runs on the machine: the header records the torch thread count and the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000
MESSAGE_S = 0.1
SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "open the door and read me a short story", "time flies like an arrow"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[8, 16, 32], help="encoder frames (40 ms each)")
    p.add_argument("--audio", type=Path, help="audio to stream (default: espeak-ng sentences)")
    p.add_argument("--max-latency", type=float, default=1.0, help="p95 chunk latency (s) a sustained load keeps under")
    p.add_argument("--max-sessions", type=int, default=64, help="stop the capacity search here")
    p.add_argument("--session-seconds", type=float, default=8.0, help="audio per session in the capacity runs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p.parse_args()


def speech(path: Path | None) -> np.ndarray:
    from s2s_media.audio import load_audio
    if path is not None:
        return load_audio(path)
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
            parts += [load_audio(wav), np.zeros(SR // 2, np.float32)]
    return np.concatenate(parts)


def pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


class Recorder:
    """Keeps every chunk latency the server observes (its metrics keep only histogram buckets)."""

    def __init__(self, metrics):
        self.latencies: list[float] = []
        original = metrics.decoded

        def decoded(batch_size: int, latencies: list[float]) -> None:
            self.latencies.extend(latencies)
            original(batch_size, latencies)
        metrics.decoded = decoded


async def client(url: str, wav: np.ndarray, speed: float, start_delay: float = 0.0) -> dict:
    """One v1 session; returns first-partial and final latencies (seconds)."""
    from websockets.asyncio.client import connect
    await asyncio.sleep(start_delay)
    step = int(SR * MESSAGE_S)
    out = {"first_partial": None, "final_after_stop": None}
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start"}))
        assert json.loads(await ws.recv())["type"] == "ready"

        async def send():
            t0 = time.monotonic()
            out["t_first_audio"] = t0
            for k, i in enumerate(range(0, len(wav), step)):
                if speed > 0:
                    await asyncio.sleep(max(0.0, t0 + k * MESSAGE_S / speed - time.monotonic()))
                await ws.send(pcm16(wav[i:i + step]))
            out["t_stop"] = time.monotonic()
            await ws.send(json.dumps({"type": "stop"}))

        sender = asyncio.create_task(send())
        last_final = None
        async for raw in ws:
            msg = json.loads(raw)
            now = time.monotonic()
            if msg["type"] == "partial" and out["first_partial"] is None:
                out["first_partial"] = now - out["t_first_audio"]
            elif msg["type"] == "final":
                last_final = now
            elif msg["type"] == "end":
                break
            elif msg["type"] == "error":
                raise RuntimeError(f"server error: {msg}")
        await sender
        out["final_after_stop"] = last_final - out["t_stop"] if last_final else None
        out["wall"] = time.monotonic() - out["t_first_audio"]
    return out


async def with_server(recognizer, args, body):
    """Run ``body(url, recorder)`` against a fresh server (fresh metrics) on ``recognizer``."""
    from server import App, ServerConfig
    app = App(recognizer, ServerConfig(port=0, max_sessions=args.max_sessions + 1, idle_timeout_s=120))
    recorder = Recorder(app.metrics)
    task = asyncio.create_task(app.run())
    await app.ready.wait()
    try:
        return await body(f"ws://127.0.0.1:{app.port}/v1/stream", recorder)
    finally:
        app.stop()
        await task


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


async def bench_chunk(chunk_size: int, wav: np.ndarray, args) -> dict:
    from s2s_media.cli.serve import load_recognizer
    recognizer = load_recognizer(args.model, chunk_size)
    row = {"chunk": chunk_size}

    async def single(url, rec):
        r = await client(url, wav, 1.0)
        row.update(first_partial=r["first_partial"], final=r["final_after_stop"],
                   p50=pct(rec.latencies, 50), p95=pct(rec.latencies, 95), max=max(rec.latencies))
    await with_server(recognizer, args, single)

    async def fast(url, rec):
        r = await client(url, wav, 0.0)
        row["rtf"] = r["wall"] / (len(wav) / SR)
    await with_server(recognizer, args, fast)

    clip = wav[:int(args.session_seconds * SR)]

    async def load(n: int) -> float:
        async def run(url, rec):
            spread = chunk_size * 0.04
            await asyncio.gather(*(client(url, clip, 1.0, spread * i / n) for i in range(n)))
            return pct(rec.latencies, 95)
        return await with_server(recognizer, args, run)

    # doubling, then bisection between the last sustained and the first failed count
    good, bad, n, tried = 0, None, 1, {}
    while n <= args.max_sessions:
        tried[n] = await load(n)
        if tried[n] < args.max_latency:
            good, n = n, n * 2
        else:
            bad = n
            break
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        tried[mid] = await load(mid)
        good, bad = (mid, bad) if tried[mid] < args.max_latency else (good, mid)
    row["sessions"] = good
    row["tried"] = tried
    return row


def markdown(rows: list[dict], wav: np.ndarray, args) -> str:
    import torch
    load = os.getloadavg()
    lines = [
        f"## Streaming server benchmark ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"model `{args.model or 'bundled'}`, audio {len(wav) / SR:.1f} s, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, load average before {load[0]:.2f}; "
        f"capacity: {args.session_seconds:g} s sessions, sustained = p95 chunk latency < {args.max_latency:g} s.",
        "",
        "| chunk | first partial (s) | final after stop (s) | chunk latency p50 / p95 / max (ms) | RTF "
        "| real-time sessions |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fp = f"{r['first_partial']:.2f}" if r["first_partial"] is not None else "none"
        fin = f"{r['final']:.2f}" if r["final"] is not None else "none"
        lines.append(f"| {r['chunk']} ({r['chunk'] * 40} ms) | {fp} | {fin} | {r['p50'] * 1000:.0f} / "
                     f"{r['p95'] * 1000:.0f} / {r['max'] * 1000:.0f} | {r['rtf']:.3f} | {r['sessions']} |")
    lines += ["", "Capacity runs (sessions: p95 chunk latency in s): "
              + "; ".join(f"chunk {r['chunk']}: " + ", ".join(f"{n}: {v:.2f}" for n, v in sorted(r["tried"].items()))
                          for r in rows)]
    return "\n".join(lines)


def main() -> int:
    import logging
    import torch
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    wav = speech(args.audio)
    rows = []
    for c in args.chunk_sizes:
        print(f"chunk {c}...", file=sys.stderr, flush=True)
        rows.append(asyncio.run(bench_chunk(c, wav, args)))
    print(markdown(rows, wav, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
