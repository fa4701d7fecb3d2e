#!/usr/bin/env python3
"""Ramped load test of the streaming server: add real-time sessions until latency breaks.

One real server process (``s2s-media serve --port 0``, model loading not timed). Honest sessions
stream a wav in a loop at real-time pace (protocol v1, 100 ms PCM16 messages), each from its own
loopback address (127.0.1.k), and are added ``--step`` at a time every ``--step-seconds`` up to
``--max-sessions + --past``: the server runs with ``--max-sessions``, so the last levels show what
happens past it. Per level, over the level's second half:

* decode lag: audio sent minus the ``end`` of each partial (how far decoding trails the client),
  p50 / p95 over every partial of every honest session;
* refused: sessions answered ``overloaded`` instead of ``ready``;
* server RSS, and (RSS - idle RSS) / open sessions; server CPU (% of one core).

The knee is the first level whose p95 decode lag exceeds one chunk + ``--knee-lag`` (or where an
admitted honest session fails).

``--hostile`` adds one hostile session per two honest ones (a third of all), from 4 addresses
(127.0.2.1-4), cycling three kinds that reconnect whenever the server ends them: ``flood``
(1 MiB audio messages as fast as the server takes them, then a 4 MiB frame), ``squat``
(connects, never starts) and ``trickle`` (starts, then 2 bytes a second). The server then runs
with ``--start-timeout 2 --rate-window 5`` so squatters and tricklers are ended within a level;
the table adds what ended them. Compare its lag columns with a run without ``--hostile``.

Markdown goes to stdout (paste it into docs/benchmarks.md), progress to stderr::

    python scripts/bench_load.py --max-sessions 16 --step 2 --step-seconds 10
    python scripts/bench_load.py --max-sessions 16 --step 2 --step-seconds 10 --hostile
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_stream import FRAME_S, MESSAGE_BYTES, MESSAGE_S, Server, pct  # noqa: E402 - the server launcher
from server.client import STOP, connect, pcm16, start_message  # noqa: E402 - the one v1 client
from websockets.exceptions import ConnectionClosed  # noqa: E402
from server.protocol import MAX_MESSAGE_BYTES  # noqa: E402

SENTENCE = "the quick brown fox jumps over the lazy dog while the cat sat on the mat and watched"
HOSTILE_KINDS = ("flood", "squat", "trickle")
HOSTILE_FLAGS = ("--start-timeout", "2", "--rate-window", "5")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--wav", type=Path, help="speech each session loops (default: a sentence spoken by espeak-ng)")
    p.add_argument("--chunk-size", type=int, default=8, help="encoder frames per chunk (default: %(default)s)")
    p.add_argument("--max-sessions", type=int, default=16, help="the server's --max-sessions (default: %(default)s)")
    p.add_argument("--past", type=int, default=4, help="honest sessions tried past --max-sessions (default: %(default)s)")
    p.add_argument("--step", type=int, default=2, help="honest sessions added per level (default: %(default)s)")
    p.add_argument("--step-seconds", type=float, default=10.0, help="length of a level (default: %(default)s)")
    p.add_argument("--knee-lag", type=float, default=1.0,
                   help="p95 decode lag over one chunk that marks the knee, seconds (default: %(default)s)")
    p.add_argument("--hostile", action="store_true", help="a third of the sessions hostile (see above)")
    p.add_argument("--threads", type=int, help="server threads (OMP_NUM_THREADS; default: the server's default)")
    p.add_argument("--json", type=Path, help="also save the raw rows here")
    return p.parse_args()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def speech(path: Path | None) -> bytes:
    """PCM16 of ``path``, or of a sentence spoken by espeak-ng at 16 kHz."""
    from s2s_media.frontend.audio import load_audio
    if path is not None:
        return pcm16(load_audio(path))
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        try:
            subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"error: espeak-ng failed ({e}); pass --wav FILE") from None
        return pcm16(load_audio(wav))


class Stats:
    """What every client saw, time-stamped so each level can take its own share."""

    def __init__(self):
        self.lags: list[tuple[float, float]] = []          # (time, decode lag) of honest partials
        self.refused = 0                                   # honest sessions answered overloaded
        self.failed: list[str] = []                        # admitted honest sessions that broke
        self.hostile_ends: collections.Counter = collections.Counter()   # "kind: how it ended"


# ---------------------------------------------------------------- clients
async def honest(url: str, pcm: bytes, addr: str, stats: Stats, stop: asyncio.Event) -> None:
    """A real-time session looping ``pcm`` until ``stop``; its lags go to ``stats``."""
    try:
        async with await connect(url, open_timeout=60, local_addr=(addr, 0)) as ws:
            try:
                await ws.send(start_message())
                msg = json.loads(await ws.recv())
            except ConnectionClosed as e:        # refused right after the handshake, before start was sent
                msg = {"type": "error", "code": "overloaded" if e.rcvd and e.rcvd.code == 1013 else "closed"}
            if msg["type"] != "ready":
                stats.refused += msg.get("code") == "overloaded"
                if msg.get("code") != "overloaded":
                    stats.failed.append(f"not ready: {msg}")
                return
            t0, sent = time.monotonic(), [0.0]

            async def send():
                k = 0
                while not stop.is_set():
                    await asyncio.sleep(t0 + k * MESSAGE_S - time.monotonic())
                    i = (k * MESSAGE_BYTES) % len(pcm)
                    await ws.send((pcm[i:] + pcm)[:MESSAGE_BYTES])
                    k += 1
                    sent[0] = k * MESSAGE_S
                await ws.send(STOP)
            sender = asyncio.create_task(send())
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg["type"] == "partial":
                        stats.lags.append((time.monotonic(), sent[0] - msg["end"]))
                    elif msg["type"] == "error":
                        stats.failed.append(f"{msg['code']}: {msg['message']}")
                    elif msg["type"] == "end":
                        break
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    except Exception as e:  # noqa: BLE001 - counted, the run goes on
        stats.failed.append(f"{type(e).__name__}: {e}")


async def hostile(url: str, kind: str, addr: str, stats: Stats, stop: asyncio.Event) -> None:
    """One hostile client of ``kind``, reconnecting whenever the server ends it, until ``stop``."""
    flood = b"\1\0" * (MAX_MESSAGE_BYTES // 2)
    while not stop.is_set():
        how = "closed by client"
        try:
            async with await connect(url, open_timeout=60, local_addr=(addr, 0)) as ws:
                if kind != "squat":
                    await ws.send(start_message())
                    if json.loads(await ws.recv())["type"] != "ready":
                        how = "refused"
                        raise ConnectionAbortedError
                if kind == "flood":
                    for _ in range(8):
                        await ws.send(flood)
                    await ws.send(b"\0" * (4 * MAX_MESSAGE_BYTES))
                elif kind == "trickle":
                    while not stop.is_set():
                        await ws.send(b"\0\0")
                        await asyncio.sleep(1.0)
                await asyncio.wait({asyncio.ensure_future(ws.wait_closed()), asyncio.ensure_future(stop.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                if ws.close_code is not None:
                    how = f"close {ws.close_code} {(ws.close_reason or '').split(':')[0][:24]}"
        except ConnectionAbortedError:
            pass
        except Exception as e:  # noqa: BLE001 - whatever ended it is what the table shows
            code = getattr(getattr(e, "rcvd", None), "code", None)
            how = f"close {code} {getattr(e.rcvd, 'reason', '').split(':')[0][:24]}" if code else type(e).__name__
        stats.hostile_ends[f"{kind}: {how}"] += 1
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- the ramp
async def ramp(server: Server, pcm: bytes, args: argparse.Namespace) -> list[dict]:
    url = f"ws://127.0.0.1:{server.port}/v1/stream"
    stats, stop, tasks, rows = Stats(), asyncio.Event(), [], []
    idle = server.rss_mb()
    n_honest = n_hostile = 0
    levels = list(range(args.step, args.max_sessions + args.past + 1, args.step))
    for level in levels:
        while n_honest < level:
            tasks.append(asyncio.create_task(honest(url, pcm, f"127.0.1.{n_honest + 1}", stats, stop)))
            n_honest += 1
            if args.hostile and n_honest % 2 == 0:
                kind = HOSTILE_KINDS[n_hostile % len(HOSTILE_KINDS)]
                tasks.append(asyncio.create_task(hostile(url, kind, f"127.0.2.{n_hostile % 4 + 1}", stats, stop)))
                n_hostile += 1
        log(f"{n_honest} honest + {n_hostile} hostile sessions for {args.step_seconds:g} s...")
        t_start, cpu0 = time.monotonic(), server.cpu_seconds()
        await asyncio.sleep(args.step_seconds)
        t_end = time.monotonic()
        half = t_start + (t_end - t_start) / 2
        lags = [lag for t, lag in stats.lags if t >= half]
        rss = server.rss_mb()
        open_now = min(n_honest - stats.refused, args.max_sessions) + n_hostile
        rows.append({"honest": n_honest, "hostile": n_hostile, "lag_p50": pct(lags, 50), "lag_p95": pct(lags, 95),
                     "partials": len(lags), "refused": stats.refused, "failed": list(stats.failed),
                     "rss_mb": rss, "rss_per_session_mb": (rss - idle) / max(open_now, 1),
                     "cpu_pct": 100 * (server.cpu_seconds() - cpu0) / (t_end - t_start),
                     "hostile_ends": dict(stats.hostile_ends)})
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for r in rows:
        r["idle_rss_mb"] = idle
    return rows


def markdown(rows: list[dict], header: str, args: argparse.Namespace) -> str:
    def s(x):
        return "–" if x is None else f"{x:.2f}"
    limit = args.chunk_size * FRAME_S + args.knee_lag
    knee = next((r for r in rows if r["failed"] or r["lag_p95"] is None or r["lag_p95"] > limit), None)
    lines = [header, "",
             "| honest + hostile sessions | decode lag p50 / p95 (s) | refused so far (overloaded) | server RSS (MB) "
             "| RSS per open session (MB) | server CPU (% of a core) |" + (" hostile sessions ended so far, by |" if args.hostile
                                                                        else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- |" if args.hostile else "")]
    for r in rows:
        lag = f"{s(r['lag_p50'])} / {s(r['lag_p95'])}" + (f", {len(r['failed'])} failed" if r["failed"] else "")
        row = (f"| {r['honest']} + {r['hostile']} | {lag} | {r['refused']} | {r['rss_mb']:.0f} "
               f"| {r['rss_per_session_mb']:.1f} | {r['cpu_pct']:.0f} |")
        if args.hostile:
            row += " " + ", ".join(f"{k} ×{n}" for k, n in sorted(r["hostile_ends"].items())) + " |"
        lines.append(row)
    verdict = (f"{knee['honest']} honest sessions (p95 decode lag {s(knee['lag_p95'])} s > {limit:.2f} s"
               + (f"; {len(knee['failed'])} failed, e.g. {knee['failed'][0]}" if knee["failed"] else "") + ")"
               if knee else f"not reached up to {rows[-1]['honest']} honest sessions")
    return "\n".join(lines + ["", f"Idle RSS {rows[0]['idle_rss_mb']:.0f} MB. Knee (p95 decode lag over one chunk "
                                  f"+ {args.knee_lag:g} s, or a failed session): {verdict}."])


def main() -> int:
    args = parse_args()
    pcm = speech(args.wav)
    extra = ("--max-sessions", str(args.max_sessions), *(HOSTILE_FLAGS if args.hostile else ()))
    load = os.getloadavg()[0]
    header = (f"## Ramped load ({time.strftime('%Y-%m-%d %H:%M')}){' with hostile sessions' if args.hostile else ''}"
              f"\n\n`{' '.join(['python scripts/bench_load.py', *sys.argv[1:]])}`: model "
              f"`{args.model or 'bundled'}`, chunk {args.chunk_size} ({args.chunk_size * FRAME_S * 1000:.0f} ms), "
              f"server `{' '.join(extra)}`, {os.cpu_count()} CPUs, load average before {load:.2f}; "
              f"{args.step_seconds:g} s per level, lags from its second half.")
    log("starting the server...")
    server = Server(args.chunk_size, args, extra)
    try:
        rows = asyncio.run(ramp(server, pcm, args))
    finally:
        server.stop()
    print(markdown(rows, header, args))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
