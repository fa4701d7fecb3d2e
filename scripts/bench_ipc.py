#!/usr/bin/env python3
"""What moving audio to a decoding worker costs (``serve --workers N``, :mod:`server.workers`).

Sends the server's own message, ``("feed", session, samples)`` with 100 ms of float32 audio
``(1600,)``, from this process to a spawned one and back (the worker echoes a small reply, as its
events are), over a ``multiprocessing`` pipe and over a ``multiprocessing.Queue`` pair, and reports:

* round trip (p50, p95): send, the other process receives and answers, the answer arrives;
* CPU per message in the sending process (sending and collecting the answers) and throughput when
  sending flat out.

64 real-time sessions send 640 such messages per second (4 MB/s)::

    python scripts/bench_ipc.py --messages 5000
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time

import numpy as np

SAMPLES = 1600          # 100 ms at 16 kHz, what a client message becomes


def echo_pipe(conn) -> None:
    while (msg := conn.recv()) is not None:
        conn.send(("events", msg[1], [], False, None, len(msg[2])))


def echo_queue(inbox, outbox) -> None:
    while (msg := inbox.get()) is not None:
        outbox.put(("events", msg[1], [], False, None, len(msg[2])))


def measure(send, recv, n: int) -> dict:
    samples = np.random.default_rng(0).standard_normal(SAMPLES).astype(np.float32)
    rtt = []
    for i in range(n):                       # round trips, one message at a time
        t = time.perf_counter()
        send(("feed", i, samples))
        recv()
        rtt.append(time.perf_counter() - t)
    # flat out: a thread collects the answers (as the server's reader thread does; without it both sides
    # would block once the answers fill the channel)
    collector = threading.Thread(target=lambda: [recv() for _ in range(n)])
    cpu, wall = time.process_time(), time.perf_counter()
    collector.start()
    for i in range(n):
        send(("feed", i, samples))
    collector.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"rtt_p50_us": 1e6 * float(np.percentile(rtt, 50)), "rtt_p95_us": 1e6 * float(np.percentile(rtt, 95)),
            "cpu_per_msg_us": 1e6 * cpu / n, "msgs_per_s": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    n = ap.parse_args().messages
    ctx = mp.get_context("spawn")
    rows = {}
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=echo_pipe, args=(theirs,))
    p.start()
    rows["Pipe (server.workers)"] = measure(ours.send, ours.recv, n)
    ours.send(None)
    p.join()
    inbox, outbox = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo_queue, args=(inbox, outbox))
    p.start()
    rows["Queue"] = measure(inbox.put, outbox.get, n)
    inbox.put(None)
    p.join()
    print(f"{n} messages of {SAMPLES} float32 samples; load average {os.getloadavg()[0]:.2f}\n")
    print("| channel | round trip p50 / p95 (µs) | sender CPU per message (µs) | messages/s flat out "
          "| front CPU at 640 msg/s (% of a core) |\n| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['rtt_p50_us']:.0f} / {r['rtt_p95_us']:.0f} | {r['cpu_per_msg_us']:.1f} "
              f"| {r['msgs_per_s']:.0f} | {640 * r['cpu_per_msg_us'] / 1e4:.2f} |")


if __name__ == "__main__":
    main()
