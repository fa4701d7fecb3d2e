#!/usr/bin/env python3
"""Training throughput of one config: audio-seconds trained per wall second, the data pipeline's
share, dev WER after a fixed budget, peak RSS.

It runs the real ``s2s-media train`` (under ``torchrun`` with ``--nproc`` > 1) for a wall-clock
budget (``--minutes``) or an amount of audio (``--audio-hours``), without validation inside the
run, then scores the last checkpoint on the dev manifest with CTC greedy decoding (the metric
that training's validation reports). Peak RSS is the largest sum over the whole process tree
(ranks and DataLoader workers), sampled twice a second.

    python scripts/bench_train.py --name baseline --config recipes/synthetic_speech/conf/conformer.yaml \\
        --train data/train.jsonl --dev data/dev.jsonl --minutes 15
    python scripts/bench_train.py --name fast --config conf/fast.yaml --train ... --dev ... --minutes 15 \\
        --nproc 2 --set data.feature_cache=data/feats

Each run appends one JSON line to ``--results`` (default ``bench_train.jsonl``) and prints the
Markdown table of every run recorded there. Figures depend on what else the machine runs: keep
it idle, and compare runs made back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

COLUMNS = ("name", "procs", "audio_s_per_s", "data_wait_share", "steps", "audio_hours", "minutes",
           "dev_wer", "peak_rss_mb")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) if "VmRSS" in status else 0
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, AttributeError):
            continue
    return total / 1024


class PeakRSS(threading.Thread):
    """Samples :func:`tree_rss_mb` of a process every ``interval`` seconds until it ends."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def train_command(args, exp: Path) -> list[str]:
    sets = [f"train.exp_dir={exp}", f"data.train={args.train}", "data.dev=\"\"", "train.valid_interval=0",
            "train.epochs=1000", f"train.max_minutes={args.minutes}", f"train.max_audio_hours={args.audio_hours}",
            f"train.threads={args.threads}", f"train.seed={args.seed}", *args.set]
    if args.nproc > 1:
        head = ["torchrun", "--standalone", f"--nproc-per-node={args.nproc}", "-m", "s2s_media.cli.main"]
    else:
        head = ["s2s-media"]
    return [*head, "train", args.config, *[x for s in sets for x in ("--set", s)]]


def dev_wer(exp: Path, dev: str, limit: int, work: Path) -> float:
    """CTC greedy WER of ``exp/last.pt`` on the first ``limit`` utterances of ``dev`` (evenly spread)."""
    lines = [line for line in Path(dev).read_text().splitlines() if line.strip()]
    step = max(1, len(lines) // max(1, limit))
    subset = work / "dev_subset.jsonl"
    base = Path(dev).resolve().parent
    rows = []
    for line in lines[::step][:limit]:
        row = json.loads(line)
        row["audio"] = str((base / row["audio"]).resolve())
        rows.append(json.dumps(row))
    subset.write_text("\n".join(rows) + "\n")
    out = work / "decode_dev"
    subprocess.run(["s2s-media", "evaluate", "--model", str(exp / "last.pt"), "--manifest", str(subset),
                    "--decoding", "ctc_greedy", "--lm-weight", "0", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    scores = json.loads((out / "scores.json").read_text())
    return 100.0 * float(scores["scores"]["ctc_greedy"]["wer"])


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    fmt = {"audio_s_per_s": "{:.1f}", "data_wait_share": "{:.1%}", "audio_hours": "{:.2f}", "minutes": "{:.1f}",
           "dev_wer": "{:.2f}", "peak_rss_mb": "{:.0f}"}
    return head + "".join("| " + " | ".join(fmt.get(c, "{}").format(r[c]) if r.get(c) is not None else "-"
                                            for c in COLUMNS) + " |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="a label for this run in the results table")
    ap.add_argument("--config", required=True, help="training YAML")
    ap.add_argument("--train", required=True, help="train manifest")
    ap.add_argument("--dev", required=True, help="dev manifest (scored after the run)")
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget (default 15)")
    ap.add_argument("--audio-hours", type=float, default=0.0,
                    help="stop after this much audio instead (0 = only the time budget)")
    ap.add_argument("--nproc", type=int, default=1, help="DDP processes (torchrun) (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dev-utts", type=int, default=200, help="dev utterances scored (default 200)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--results", default="bench_train.jsonl", help="JSONL file the run is appended to")
    ap.add_argument("--keep", metavar="DIR", help="keep the experiment folder here instead of a temporary one")
    args = ap.parse_args(argv)
    for path in (args.config, args.train, args.dev):
        if not Path(path).is_file():
            ap.error(f"{path}: not found")

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        exp = Path(args.keep) if args.keep else work / "exp"
        cmd = train_command(args, exp)
        print("+", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, start_new_session=True)
        rss = PeakRSS(proc.pid)
        rss.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait()
            raise
        finally:
            peak = rss.stop()
        if code != 0:
            print(f"error: training exited with {code}", file=sys.stderr)
            return 1
        summary = json.loads((exp / "summary.json").read_text())
        wer_value = dev_wer(exp, args.dev, args.dev_utts, work)

    row = {"name": args.name, "procs": f"{args.nproc}x{args.threads or 'all'}",
           "audio_s_per_s": summary["audio_s_per_s"], "data_wait_share": summary.get("data_wait_share"),
           "steps": summary["step"], "audio_hours": summary["audio_hours"], "minutes": summary["elapsed_s"] / 60,
           "dev_wer": wer_value, "peak_rss_mb": peak, "config": args.config, "set": args.set,
           "machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
