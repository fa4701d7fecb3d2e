#!/usr/bin/env python3
"""Benchmark the streaming server: N concurrent real-time sessions, for a few chunk sizes.

For each ``--chunk-sizes`` value and each ``--workers`` value W the script starts one real server
(``python -m s2s_media.cli.main serve --port 0 --chunk-size C --workers W``; model loading is not timed)
and, for each ``--sessions`` value N, streams N sessions at real-time pace over loopback with
protocol v1 (start, 100 ms PCM16 messages, stop). Session k streams test utterances k, k+1, ...
of ``--manifest`` joined by 1.5 s of silence (long enough for the 1.2 s endpoint rule, so each
utterance gets its own final), until it has ``--session-seconds`` of audio;
session starts are spread evenly over one chunk. Per (chunk, N) it reports:

* first partial: first audio message -> first partial (p50, p95 over sessions);
* final after stop: ``stop`` sent -> last final received (p50, p95, max);
* server CPU: the user+system time of the server process and its decoding workers over the run / wall
  time (% of one core; 200 % is both cores of a 2-core machine);
* kept up: every session got ``end``, its sender never fell more than 0.2 s behind its real-time
  schedule (server back-pressure blocks ``send``), and its decoding never lagged the audio sent
  by more than one chunk + 1 s (the lag is measured at each partial: audio sent minus the
  partial's ``end``); the worst lag is shown;
* WER of the finals against the manifest texts (both normalised).

The last lines name the smallest chunk size meeting the target: 16 sessions, p95 final after
stop <= 0.5 s, every session kept up; and whether the server target of issue #12 is met: 64
sessions, p95 final <= 0.3 s, p95 first partial <= 0.6 s, every session kept up. Markdown goes to stdout, progress to stderr. Example::

    python scripts/bench_stream.py --chunk-sizes 8 16 32 --sessions 1 8 16 32 --json bench.json
    python scripts/bench_stream.py --chunk-sizes 8 --sessions 16 32 64 --workers 1 2

The numbers depend on what else runs on the machine: the header records the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from server.client import STOP, connect  # noqa: E402 - the one v1 client, from this checkout

SR = 16000
MESSAGE_S = 0.1                       # audio per binary message
MESSAGE_BYTES = int(SR * MESSAGE_S) * 2
FRAME_S = 0.04                        # one encoder frame
GAP_S = 1.5                           # silence between utterances (> the 1.2 s endpoint rule)
MAX_LATE_S = 0.2                      # a sender later than this behind its schedule did not keep up
MAX_LAG_S = 1.0                       # decoding further behind the audio than one chunk + this did not keep up
TARGET = {"sessions": 16, "p95_final_s": 0.5}
SERVER_TARGET = {"sessions": 64, "p95_final_s": 0.3, "p95_first_partial_s": 0.6}   # issue #12
DEFAULT_MANIFEST = ROOT / "recipes/synthetic_speech/data/test.jsonl"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="JSONL test manifest (default: %(default)s)")
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[8, 16, 32], help="encoder frames (40 ms each)")
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 16, 32], help="concurrent sessions")
    p.add_argument("--session-seconds", type=float, default=10.0, help="audio per session (at least)")
    p.add_argument("--workers", nargs="+", default=["auto"], help="serve --workers values to compare")
    p.add_argument("--threads", type=int, help="server threads (OMP_NUM_THREADS; default: the server's default)")
    p.add_argument("--json", type=Path, help="also save the raw rows here")
    return p.parse_args()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- audio
class Corpus:
    """Session audio from the manifest: session k = utterances k, k+1, ... (wrapping) joined by silence."""

    def __init__(self, manifest: Path, seconds: float):
        from s2s_media.data.manifest import read_manifest
        from s2s_media.errors import ManifestError
        self.records, self.seconds, self._wavs = read_manifest(manifest), seconds, {}
        if not self.records:
            raise ManifestError(f"{manifest}: the manifest is empty")

    def session(self, k: int) -> tuple[bytes, str]:
        """PCM16 bytes and reference text of session ``k``."""
        parts, texts, n, i = [], [], 0, k
        while n < self.seconds * SR:
            rec = self.records[i % len(self.records)]
            if rec.id not in self._wavs:
                self._wavs[rec.id] = rec.load()
            if parts:
                parts.append(np.zeros(int(GAP_S * SR), np.float32))
            parts.append(self._wavs[rec.id])
            texts.append(rec.text)
            n, i = sum(map(len, parts)), i + 1
        wav = np.concatenate(parts)
        return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes(), " ".join(texts)


# ---------------------------------------------------------------- server process
class Server:
    """``s2s-media serve --port 0`` in a subprocess; keeps its last log lines. ``extra``: more serve
    options (a repeated option overrides the one before)."""

    def __init__(self, chunk_size: int, args: argparse.Namespace, extra: tuple[str, ...] = ()):
        cmd = [sys.executable, "-m", "s2s_media.cli.main", "serve", "--port", "0", "--chunk-size", str(chunk_size),
               "--max-sessions", "64", "--max-per-client", "0", *extra] + (["--model", str(args.model)] if args.model else [])
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.threads:
            env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.tail: collections.deque[str] = collections.deque(maxlen=8)
        lines: queue.Queue[str | None] = queue.Queue()

        def read():
            for line in self.proc.stderr:
                self.tail.append(line.rstrip())
                lines.put(line)
            lines.put(None)
        threading.Thread(target=read, daemon=True).start()
        deadline, line = time.monotonic() + 300, ""     # importing torch on a busy machine can be slow
        while line is not None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                continue
            if line and (m := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)):
                self.port = int(m.group(1))
                return
        why = f"(exit code {self.proc.wait()})" if line is None else "within 300 s"   # None: its log ended
        self.stop()
        raise RuntimeError(f"the server did not start {why}; its last log lines: {self.last_log()}")

    def last_log(self) -> str:
        return " | ".join(self.tail) or "(none)"

    def pids(self) -> list[int]:
        """The server process and its children (the decoding workers of ``--workers N``)."""
        pids, i = [self.proc.pid], 0
        while i < len(pids):
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            i += 1
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its workers so far (/proc/PID/stat)."""
        total = 0.0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:     # ended meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_mb(self) -> float:
        """Resident memory of the server process in MB (/proc/PID/status VmRSS)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the server reports no open sessions (``/metrics``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                    if re.search(r"^s2s_sessions_active 0$", r.read().decode(), re.M):
                        return
            except OSError:
                time.sleep(1.0)
                return
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- clients
async def session(url: str, pcm: bytes, delay: float) -> dict:
    """One real-time v1 session: message k is sent at t0 + k x 100 ms, ``stop`` right after the last."""
    await asyncio.sleep(delay)
    r = {"first_partial": None, "final_after_stop": None, "lateness": 0.0, "end": False, "finals": [],
         "decode_lag": 0.0, "sent_s": 0.0}
    async with await connect(url, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start"}))
        msg = json.loads(await ws.recv())
        if msg["type"] != "ready":
            raise RuntimeError(f"expected ready, got {msg}")
        t0 = time.monotonic()

        async def send():
            for k, i in enumerate(range(0, len(pcm), MESSAGE_BYTES)):
                due = t0 + k * MESSAGE_S
                await asyncio.sleep(due - time.monotonic())
                await ws.send(pcm[i:i + MESSAGE_BYTES])          # blocks under back-pressure
                r["lateness"] = max(r["lateness"], time.monotonic() - due)
                r["sent_s"] = min(i + MESSAGE_BYTES, len(pcm)) / 2 / SR
            r["t_stop"] = time.monotonic()
            await ws.send(STOP)

        sender = asyncio.create_task(send())
        try:
            last_final = None
            async for raw in ws:
                msg, now = json.loads(raw), time.monotonic()
                if msg["type"] == "partial":
                    if r["first_partial"] is None:
                        r["first_partial"] = now - t0
                    # audio sent but not decoded yet (seen whenever a partial comes)
                    r["decode_lag"] = max(r["decode_lag"], r["sent_s"] - msg["end"])
                elif msg["type"] == "final":
                    r["finals"].append(msg["text"])
                    last_final = now
                elif msg["type"] == "end":
                    r["end"] = True
                    break
                elif msg["type"] == "error":
                    raise RuntimeError(f"server error {msg.get('code')}: {msg.get('message')}")
            await sender
        finally:
            sender.cancel()
        if last_final is not None:
            r["final_after_stop"] = last_final - r.pop("t_stop")
    return r


async def run_sessions(url: str, audio: list[tuple[bytes, str]], chunk_s: float) -> list[dict | BaseException]:
    n = len(audio)
    tasks = [asyncio.wait_for(session(url, pcm, chunk_s * k / n), timeout=len(pcm) / 2 / SR + 120)
             for k, (pcm, _) in enumerate(audio)]
    return await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------- one (chunk, N) run
def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer
    from s2s_media.text.normalize import normalize_text
    return jiwer.wer([normalize_text(t) for t in refs], [normalize_text(t) for t in hyps])


def measure(server: Server, chunk: int, n: int, corpus: Corpus, workers: str) -> dict:
    row = {"chunk": chunk, "chunk_ms": round(chunk * FRAME_S * 1000), "sessions": n, "workers": workers}
    audio = [corpus.session(k) for k in range(n)]
    url = f"ws://127.0.0.1:{server.port}/v1/stream"
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    results = asyncio.run(run_sessions(url, audio, chunk * FRAME_S))
    wall = time.monotonic() - t0
    row["server_cpu_pct"] = 100 * (server.cpu_seconds() - cpu0) / wall
    failed = [f"session {k}: " + (f"{type(r).__name__}: {r}".rstrip(": ") if isinstance(r, BaseException)
                                  else "no end message") for k, r in enumerate(results)
              if isinstance(r, BaseException) or not r["end"]]
    done = [(text, r) for (_, text), r in zip(audio, results) if not isinstance(r, BaseException)]
    ok = [r for _, r in done]
    finals = [r["final_after_stop"] for r in ok if r["final_after_stop"] is not None]
    partials = [r["first_partial"] for r in ok if r["first_partial"] is not None]
    row.update(
        first_partial_p50=pct(partials, 50), first_partial_p95=pct(partials, 95),
        no_partial=len(ok) - len(partials),
        final_p50=pct(finals, 50), final_p95=pct(finals, 95), final_max=max(finals, default=None),
        worst_lateness=max((r["lateness"] for r in ok), default=None),
        worst_decode_lag=max((r["decode_lag"] for r in ok), default=None),
        wer=wer([text for text, _ in done], [" ".join(r["finals"]) for r in ok]) if ok else None,
        errors=failed, wall_s=wall, per_session=ok)
    row["session_kept_up"] = [r["end"] and r["lateness"] <= MAX_LATE_S and r["decode_lag"] <= chunk * FRAME_S + MAX_LAG_S
                              for r in ok]
    row["kept_up"] = not failed and all(row["session_kept_up"])
    return row


# ---------------------------------------------------------------- report
def markdown(rows: list[dict], header: str, args: argparse.Namespace) -> str:
    def s(x):
        return "–" if x is None else f"{x:.2f}"
    lines = [header, "",
             "| chunk (ms) | workers | sessions | first partial p50 / p95 (s) | final after stop p50 / p95 / max (s) "
             "| server CPU (% of a core) | kept up (worst send lateness / decode lag, s) | WER |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['chunk_ms']} | {r['workers']} | {r['sessions']} | – | – | – | failed: {r['error']} | – |")
            continue
        behind = sum(not ok for ok in r.get("session_kept_up", []))
        kept = "yes" if r["kept_up"] else f"no ({behind} behind)" if behind else "no"
        if r["errors"]:
            kept += f", {len(r['errors'])} session(s) failed: {r['errors'][0]}"
        wer_pct = "–" if r["wer"] is None else f"{100 * r['wer']:.1f} %"
        lines.append(
            f"| {r['chunk_ms']} | {r['workers']} | {r['sessions']} | {s(r['first_partial_p50'])} / {s(r['first_partial_p95'])} "
            f"| {s(r['final_p50'])} / {s(r['final_p95'])} / {s(r['final_max'])} | {r['server_cpu_pct']:.0f} "
            f"| {kept} ({s(r['worst_lateness'])} / {s(r['worst_decode_lag'])}) | {wer_pct} |")
    meets = sorted(r["chunk"] for r in rows if r["sessions"] == TARGET["sessions"] and "error" not in r
                   and r["kept_up"] and r["final_p95"] is not None and r["final_p95"] <= TARGET["p95_final_s"])
    target = (f"{TARGET['sessions']} sessions, p95 final after stop ≤ {TARGET['p95_final_s']} s, all kept up")
    if TARGET["sessions"] not in args.sessions:
        verdict = f"not measured (--sessions does not include {TARGET['sessions']})"
    else:
        verdict = f"{meets[0]} frames ({meets[0] * FRAME_S * 1000:.0f} ms)" if meets else "none"
    t = SERVER_TARGET
    server_meets = [f"{r['workers']} workers, chunk {r['chunk_ms']} ms" for r in rows
                    if r["sessions"] == t["sessions"] and "error" not in r and r["kept_up"]
                    and (r["final_p95"] or 1e9) <= t["p95_final_s"] and (r["first_partial_p95"] or 1e9) <= t["p95_first_partial_s"]]
    server_verdict = ", ".join(server_meets) or ("none" if any(r["sessions"] == t["sessions"] for r in rows)
                                                 else f"not measured (--sessions does not include {t['sessions']})")
    return "\n".join(lines + ["", f"Smallest chunk size meeting the target ({target}): {verdict}",
                               f"Server target ({t['sessions']} sessions, p95 final ≤ {t['p95_final_s']} s, p95 first "
                               f"partial ≤ {t['p95_first_partial_s']} s, none behind) met by: {server_verdict}"])


def main() -> int:
    args = parse_args()
    if not args.manifest.is_file():
        print(f"error: {args.manifest}: manifest not found; run `cd recipes/synthetic_speech && ./run.sh "
              f"--stage 0 --stop-stage 0` or pass --manifest", file=sys.stderr)
        return 2
    from s2s_media.errors import UserError
    try:
        corpus = Corpus(args.manifest, args.session_seconds)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    threads = args.threads or (f"default (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
                               if "OMP_NUM_THREADS" in os.environ else "default")
    header = (f"## Streaming server benchmark ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
              f"model `{args.model or 'bundled'}`, {os.cpu_count()} CPUs, server threads {threads}, "
              f"load average before {load:.2f}; sessions of ≥ {args.session_seconds:g} s from `{args.manifest}`, "
              f"real-time pace, 100 ms messages, over loopback.")
    rows = []
    for chunk, workers in ((c, w) for c in args.chunk_sizes for w in args.workers):
        failed = {"chunk": chunk, "chunk_ms": round(chunk * FRAME_S * 1000), "workers": workers}
        log(f"chunk {chunk}, {workers} workers: starting the server...")
        try:
            server = Server(chunk, args, ("--workers", workers))
        except RuntimeError as e:
            log(f"error: chunk {chunk}: {e}")
            rows += [{**failed, "sessions": n, "error": str(e)} for n in args.sessions]
            continue
        try:
            for n in args.sessions:
                log(f"chunk {chunk}, {workers} workers: {n} session(s)...")
                if server.proc.poll() is not None:
                    err = f"the server exited ({server.proc.returncode}); its last log lines: {server.last_log()}"
                    rows.append({**failed, "sessions": n, "error": err})
                    log(f"error: {err}")
                    continue
                rows.append(measure(server, chunk, n, corpus, workers))
                if rows[-1]["errors"]:
                    log(f"  {len(rows[-1]['errors'])} session(s) failed, e.g. {rows[-1]['errors'][0]}")
                server.wait_idle()
        finally:
            server.stop()
    print(markdown(rows, header, args))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    return 1 if any("error" in r or r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
