"""Replicas behind a load balancer (``server/deploy/``): two real ``s2s-media serve`` processes behind
HAProxy on loopback, one drained by SIGTERM while sessions stream; and the deployment files checked."""
from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from server.client import connect, pcm16, stream
from server_fixtures import chunks
from subprocs import Spawned, free_port, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "server/deploy"
SR = 16000
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (scripts/setup.sh installs it)")


def _replica(ckpt: Path, port: int) -> Spawned:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return Spawned([sys.executable, "-m", "s2s_media.cli.main", "serve", "--model", str(ckpt), "--port", str(port),
                    "--chunk-size", "8"], env=env)


def _haproxy(bind: int, stats: int, replicas: list[int]) -> Spawned:
    env = {**os.environ, "S2S_LB_BIND": f"127.0.0.1:{bind}", "S2S_LB_STATS": f"127.0.0.1:{stats}",
           "S2S_REPLICA1": f"127.0.0.1:{replicas[0]}", "S2S_REPLICA2": f"127.0.0.1:{replicas[1]}"}
    return Spawned(["haproxy", "-db", "-f", str(DEPLOY / "haproxy.cfg")], env=env)


def _stats(port: int) -> dict[str, dict]:
    """HAProxy's per-server statistics (its CSV), by server name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats;csv", timeout=5) as r:
        text = r.read().decode().lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "replicas"}


def _wait_up(port: int, names: list[str], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if all(_stats(port)[n]["status"] == "UP" for n in names):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"HAProxy did not see {names} UP within {timeout} s: {_stats(port)}")


async def _session(url: str, audio, pace: float, streaming: asyncio.Event | None = None) -> dict:
    """One protocol-v1 session through the balancer: audio sent in 100 ms chunks every ``pace`` s."""
    ws = await connect(url)
    replica = ws.response.headers.get("X-S2S-Replica")
    msgs: list[dict] = []

    def on_message(m: dict) -> None:
        msgs.append(m)
        if m["type"] == "partial" and streaming is not None:
            streaming.set()

    async def source():
        for c in chunks(pcm16(audio), SR // 10 * 2):
            yield c
            await asyncio.sleep(pace)
    try:
        await stream(ws, source(), on_message)
        await asyncio.wait_for(ws.wait_closed(), 10)
    finally:
        await ws.close()
    return {"replica": replica, "types": [m["type"] for m in msgs], "code": ws.close_code, "ended": time.monotonic()}


@needs_haproxy
@pytest.mark.timeout(900)   # two servers importing torch on a machine busy with training can take minutes
def test_sigterm_drains_one_replica_behind_haproxy(tiny_ckpt, speech):
    ports = [free_port(), free_port()]
    lb, stats = free_port(), free_port()
    audio = speech[: 3 * SR]
    with _replica(tiny_ckpt, ports[0]) as a, _replica(tiny_ckpt, ports[1]) as b:
        for r in (a, b):
            r.wait_for(r"listening on ws://", timeout=300)   # importing torch on a busy machine can be slow
        with _haproxy(lb, stats, ports) as proxy:
            _wait_up(stats, ["replica1", "replica2"])
            url = f"ws://127.0.0.1:{lb}/v1/stream"

            async def scenario():
                flags = [asyncio.Event() for _ in range(8)]
                first = [asyncio.create_task(_session(url, audio, 0.05, f)) for f in flags]
                await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 60)  # all 8 are decoding
                t_term = time.monotonic()
                a.proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(a.wait_for, r"shutting down: \d+ session", 30)
                second = [asyncio.create_task(_session(url, audio, 0.01)) for _ in range(4)]
                done = await asyncio.wait_for(asyncio.gather(*first, *second), 120)   # no client hangs
                return t_term, done[:8], done[8:]

            t_term, first, second = asyncio.run(scenario())
            a_exit = a.proc.wait(timeout=60)
            t_exit = time.monotonic()
            per_server = {n: int(row["stot"]) for n, row in _stats(stats).items() if n.startswith("replica")}
            assert proxy.proc.poll() is None

    on_a = [s for s in first if s["replica"] == "replica1"]
    on_b = [s for s in first if s["replica"] == "replica2"]
    assert on_a and on_b, f"leastconn spread 8 sessions over both replicas: {[s['replica'] for s in first]}"
    for s in on_a:   # drained: the last final, end, then 1001 (going away)
        assert s["types"][-2:] == ["final", "end"] and s["code"] == 1001, s
    for s in on_b + second:
        assert s["types"][-2:] == ["final", "end"] and s["code"] == 1000, s
    assert [s["replica"] for s in second] == ["replica2"] * 4, "a new session landed on the draining replica"
    assert a_exit == 0
    print(f"\nsessions per replica {per_server}; first 8: {len(on_a)} on replica1, {len(on_b)} on replica2; "
          f"replica1 drained its {len(on_a)} in {max(s['ended'] for s in on_a) - t_term:.2f} s "
          f"and exited after {t_exit - t_term:.2f} s; 4 new sessions all on replica2")


@needs_haproxy
def test_haproxy_config_is_valid():
    result = run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def _k8s_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text()) if d]


def test_k8s_manifests_validate_against_the_kubernetes_schema():
    kv = pytest.importorskip("kubernetes_validate")
    docs = _k8s_docs()
    assert {d["kind"] for d in docs} == {"Deployment", "Service"}
    version = kv.utils.latest_version()
    for d in docs:
        kv.validate(d, version, strict=True)
    bad = {**docs[0], "spec": {**docs[0]["spec"], "replicas": "two"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, version, strict=True)


def test_k8s_probes_port_and_grace_match_the_server():
    from server.config import ServerConfig
    deploy = next(d for d in _k8s_docs() if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + ServerConfig().shutdown_grace_s
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"EXPOSE {port['containerPort']}" in dockerfile
    assert f'"--port", "{port["containerPort"]}"' in dockerfile and '"--host", "0.0.0.0"' in dockerfile
