"""``serve --workers N``: decoding in worker processes, over real sockets on loopback.

Sessions spread over the workers and get what the in-process engine gives them; a worker
killed mid-stream fails only its own sessions (an ``internal`` error, then close 1011), is
started again, and the other sessions finish; ``/metrics`` shows each worker's memory."""
from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import time

import pytest

from s2s_media.frontend.audio import SAMPLE_RATE
from server.client import STOP, connect, pcm16
from server.workers import WorkerPool
from server_fixtures import RunningServer, chunks, collect, session, tiny_decoder

MESSAGE = SAMPLE_RATE // 10 * 2          # 100 ms of PCM16


@pytest.fixture
def pool_server(recognizer, tiny_ckpt):
    from server import App, ServerConfig
    pool = WorkerPool(functools.partial(tiny_decoder, tiny_ckpt), 2)
    # the workers import torch and load the model before the server listens: minutes on a busy machine
    srv = RunningServer(App(recognizer, ServerConfig(host="127.0.0.1", port=0), pool=pool)).start(timeout=600)
    yield srv
    srv.stop()


def _finals(messages: list[dict]) -> list[str]:
    assert messages[0]["type"] == "ready" and messages[-1]["type"] == "end", messages[-3:]
    return [m["text"] for m in messages if m["type"] == "final"]


@pytest.mark.timeout(600)
def test_workers_share_the_sessions_and_decode_as_the_server_process(pool_server, serve, speech):
    audio = chunks(pcm16(speech), MESSAGE)

    async def run(url: str, n: int):
        return await asyncio.gather(*(session(url, {"punctuation": False}, audio) for _ in range(n)))

    in_process = asyncio.run(run(serve().url(), 1))
    pooled = asyncio.run(run(pool_server.url(), 4))
    expected = _finals(in_process[0][0])
    assert expected
    for messages, code in pooled:
        assert code == 1000 and _finals(messages) == expected
    pool_server.wait_idle()
    for w in (0, 1):   # both workers decoded, and each reports its memory
        assert pool_server.metric(f's2s_worker_batches_total{{worker="{w}"}}') > 0
        assert pool_server.metric(f's2s_worker_rss_bytes{{worker="{w}"}}') > 50e6
    assert pool_server.metric("s2s_worker_restarts_total") == 0


@pytest.mark.timeout(600)
def test_a_killed_worker_fails_its_sessions_only_and_is_restarted(pool_server, speech):
    pool = pool_server.app.engine
    audio = chunks(pcm16(speech), MESSAGE)
    half = len(audio) // 2
    url = pool_server.url()
    victim = pool.workers[0]
    killed = asyncio.Event()

    async def one() -> tuple[int, list[dict], int]:
        async with await connect(url) as ws:
            await ws.send(json.dumps({"type": "start", "punctuation": False}))
            ready = json.loads(await ws.recv())
            for a in audio[:half]:
                await ws.send(a)
            await killed.wait()
            try:
                for a in audio[half:]:
                    await ws.send(a)
                    await asyncio.sleep(0.01)
                await ws.send(STOP)
            except Exception:  # noqa: BLE001 - the server closed this session: expected for the victim's
                pass
            received = await collect(ws)
            await ws.wait_closed()
            return ready["session"], [ready, *received], ws.close_code

    async def scenario():
        tasks = [asyncio.create_task(one()) for _ in range(4)]
        deadline = time.monotonic() + 120
        while not (len(victim.sessions) == 2 and len(pool.workers[1].sessions) == 2):
            assert time.monotonic() < deadline, "sessions did not open"
            await asyncio.sleep(0.05)
        on_victim = set(victim.sessions)
        os.kill(victim.process.pid, signal.SIGKILL)
        killed.set()
        return on_victim, await asyncio.gather(*tasks)

    on_victim, results = asyncio.run(scenario())
    for sid, messages, code in results:
        if sid in on_victim:
            assert messages[-1]["type"] == "error" and messages[-1]["code"] == "internal", messages[-2:]
            assert code == 1011
        else:
            assert code == 1000 and _finals(messages)
    deadline = time.monotonic() + 300   # the new worker imports torch and loads its model
    while not (pool_server.metric("s2s_worker_restarts_total") == 1 and pool.workers[0].ready.is_set()):
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.2)
    assert pool.workers[0].process.pid != victim.process.pid
    for _ in range(2):   # new sessions land on both workers, the new one included
        messages, code = asyncio.run(session(url, {"punctuation": False}, audio))
        assert code == 1000 and _finals(messages)
    assert pool_server.metric('s2s_worker_batches_total{worker="0"}') > 0


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_is_a_one_line_error_before_loading(value, capsys):
    from s2s_media.cli.main import main
    assert main(["serve", "--workers", value, "--model", "/nonexistent/model.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--workers" in err and repr(value) in err and "auto" in err


def test_auto_is_one_worker_per_core_and_one_on_a_gpu():
    from s2s_media.cli.serve import worker_count
    assert worker_count("auto", "cpu") == len(os.sched_getaffinity(0))
    assert worker_count("auto", "cuda") == 1 and worker_count("3", "cpu") == 3


@pytest.mark.timeout(600)
def test_a_worker_that_cannot_load_its_model_is_a_one_line_error(recognizer):
    from s2s_media.errors import UserError
    from server import App, ServerConfig
    from server_fixtures import unloadable_decoder
    pool = WorkerPool(functools.partial(unloadable_decoder, "bad.pt"), 2)
    app = App(recognizer, ServerConfig(host="127.0.0.1", port=0), pool=pool)
    with pytest.raises(UserError) as e:
        asyncio.run(app.run())
    assert str(e.value).startswith("decoding worker 0: bad.pt: not a checkpoint") and "\n" not in str(e.value)
    assert not any(w.process.is_alive() for w in pool.workers)
