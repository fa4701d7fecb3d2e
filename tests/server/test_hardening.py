"""Hostile clients (issue #17): malformed numbers and nesting are the client's error, never the server's;
slots that cannot be squatted; a timeout that keeps the speech decoded so far."""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import pcm16
from server_fixtures import chunks, collect

SR = 16000

DEEP = "[" * 100_000


@pytest.mark.parametrize("path, text", [
    ("/v1/stream", '{"type":"start","sample_rate":1e999}'),
    ("/v1/stream", '{"type":"start","sample_rate":NaN}'),
    ("/v1/stream", '{"type":"start","sample_rate":-Infinity}'),
    ("/v1/stream", DEEP),
    ("/vosk", '{"config":{"sample_rate":1e999}}'),
    ("/vosk", '{"config":{"sample_rate":NaN}}'),
    ("/vosk", '{"config":{"words":-Infinity}}'),
    ("/vosk", DEEP),
])
def test_non_finite_numbers_and_deep_nesting_are_bad_requests(serve, caplog, path, text):
    srv = serve()

    async def run():
        async with connect(srv.url(path), max_size=None) as ws:
            await ws.send(text)
            replies = await collect(ws)
            return replies, ws.close_code, ws.close_reason
    with caplog.at_level(logging.INFO, logger="server"):
        replies, code, reason = asyncio.run(run())
    assert code == 1008 and reason.startswith("bad_request: text message is not valid JSON"), reason
    if path == "/v1/stream":
        assert [(r["type"], r["code"]) for r in replies] == [("error", "bad_request")]
    assert srv.metric('s2s_errors_total{code="bad_request"}') == 1
    assert srv.metric('s2s_errors_total{code="internal"}') == 0
    errors = [r for r in caplog.records if "error" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is None          # one line, no traceback
    assert not any(r.exc_info for r in caplog.records)


def request(srv, method: str, path: str) -> tuple[int, dict, bytes]:
    """One HTTP request of any method: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_liveness_and_readiness(serve):
    srv = serve(max_sessions=1)
    assert srv.get("/healthz")[::2] == (200, "ok\n") and srv.get("/readyz")[::2] == (200, "ready\n")

    async def hold_the_only_slot():
        async with connect(srv.url()) as ws:
            await ws.send('{"type":"start"}')
            assert json.loads(await ws.recv())["type"] == "ready"
            during = srv.get("/healthz")[0], srv.get("/readyz")
            await ws.send('{"type":"stop"}')
            await collect(ws)
        return during
    live, (ready, _, body) = asyncio.run(hold_the_only_slot())
    assert live == 200 and ready == 503 and body == "full: 1 of 1 sessions\n"
    srv.wait_idle()                                       # the client can see its close before the server counts it
    assert srv.get("/readyz")[0] == 200                   # the slot is free again
    srv.app.draining = True                               # what a clean shutdown sets first
    assert srv.get("/readyz")[::2] == (503, "draining: the server is shutting down\n")
    assert srv.get("/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/"])
def test_http_routes_answer_only_get_and_head(serve, path):
    srv = serve()
    status, headers, body = request(srv, "GET", path)
    assert status == 200 and body
    head_status, head_headers, head_body = request(srv, "HEAD", path)
    assert head_status == 200 and head_body == b""
    assert head_headers["Content-Type"] == headers["Content-Type"]
    for method in ("POST", "DELETE", "PUT", "OPTIONS"):
        status, headers, _ = request(srv, method, path)
        assert status == 405 and headers["Allow"] == "GET, HEAD", method


# --------------------------------------------------------------------------- slots that can't be squatted
@pytest.mark.parametrize("path", ["/v1/stream", "/vosk"])
def test_a_connection_that_never_starts_is_ended_by_the_start_deadline(serve, path):
    srv = serve(start_timeout_s=0.5, idle_timeout_s=30)

    async def run():
        async with connect(srv.url(path)) as ws:
            t0 = time.monotonic()
            replies = await collect(ws)
            return replies, ws.close_code, ws.close_reason, time.monotonic() - t0
    replies, code, reason, waited = asyncio.run(run())
    assert code == 1008 and reason == "timeout: the session did not start within 0.5 s of connecting"
    assert 0.4 < waited < 3
    if path == "/v1/stream":
        assert [(r["type"], r["code"]) for r in replies] == [("error", "timeout")]
    srv.wait_idle()
    assert srv.metric('s2s_refused_total{reason="start_timeout"}') == 1


def test_a_trickling_session_gets_its_final_then_timeout(serve):
    """0.1 s of audio, then 2 bytes every 0.2 s: under 0.2x real time over a 1 s window."""
    srv = serve(min_audio_rate=0.2, rate_window_s=1.0)

    async def run():
        async with connect(srv.url()) as ws:
            await ws.send('{"type":"start"}')
            await ws.send(b"\0\0" * 1600)

            async def trickle():
                try:
                    while True:
                        await asyncio.sleep(0.2)
                        await ws.send(b"\0\0")
                except ConnectionClosed:
                    pass
            sender = asyncio.create_task(trickle())
            t0 = time.monotonic()
            replies = await collect(ws)
            sender.cancel()
            return replies, ws.close_code, time.monotonic() - t0
    replies, code, waited = asyncio.run(run())
    assert code == 1008 and replies[-1]["code"] == "timeout", replies[-2:]
    assert "x real time over 1 s, under the minimum of 0.2x" in replies[-1]["message"]
    assert replies[-2]["type"] == "final" and replies[-2]["end"] == pytest.approx(0.1, abs=0.05)
    assert 0.9 < waited < 4
    srv.wait_idle()
    assert srv.metric('s2s_refused_total{reason="min_audio_rate"}') == 1


def test_real_time_and_faster_sessions_pass_the_rate_check(serve, speech):
    """A real-time client and one held back by back-pressure both finish: only the time the server
    waits for audio counts against the rate."""
    srv = serve(min_audio_rate=0.9, rate_window_s=0.5, engine={"max_buffered_s": 0.3})

    async def run(pace: float):
        async with connect(srv.url()) as ws:
            await ws.send('{"type":"start"}')
            for c in chunks(pcm16(speech[:2 * SR]), 3200):
                await ws.send(c)
                await asyncio.sleep(pace)
            await ws.send('{"type":"stop"}')
            return [r["type"] for r in await collect(ws)], ws.close_code
    for pace in (0.08, 0.0):         # a little faster than real time (not to fall under 0.9x), and flat out
        kinds, code = asyncio.run(run(pace))
        assert kinds[-1] == "end" and code == 1000, (pace, kinds)
    assert srv.metric('s2s_refused_total{reason="min_audio_rate"}') == 0


def test_per_client_address_cap(serve):
    srv = serve(max_per_client=2, max_sessions=10)

    async def run():
        async with connect(srv.url()) as a, connect(srv.url("/vosk")) as b:
            await a.send('{"type":"start"}')
            assert json.loads(await a.recv())["type"] == "ready"
            async with connect(srv.url()) as third:             # the same address: refused
                refusal = json.loads(await third.recv())
                await third.wait_closed()
                refused = refusal, third.close_code
            async with connect(srv.url(), local_addr=("127.0.0.2", 0)) as other:   # another address: served
                await other.send('{"type":"start"}')
                other_ready = json.loads(await other.recv())["type"]
                await other.send('{"type":"stop"}')
                await collect(other)
            await a.send('{"type":"stop"}')
            await collect(a)
            await b.send('{"eof":1}')
            await collect(b)
        async with connect(srv.url()) as again:                # slots of this address are free again
            await again.send('{"type":"start"}')
            return refused, other_ready, json.loads(await again.recv())["type"]
    (refusal, code), other_ready, again = asyncio.run(run())
    assert refusal == {"type": "error", "code": "overloaded",
                       "message": "this address has 2 sessions open, the limit per client; retry later"}
    assert code == 1013 and other_ready == "ready" and again == "ready"
    srv.wait_idle()
    assert srv.metric('s2s_refused_total{reason="max_per_client"}') == 1
    assert srv.metric('s2s_refused_total{reason="max_sessions"}') == 0


def test_vosk_timeout_sends_the_last_result_then_closes(serve, speech):
    srv = serve(idle_timeout_s=0.5)

    async def run():
        async with connect(srv.url("/vosk")) as ws:
            await ws.send('{"config":{"sample_rate":16000}}')
            replies = []
            for c in chunks(pcm16(speech[:SR]), 3200):
                await ws.send(c)
                replies.append(json.loads(await ws.recv()))
            rest = await collect(ws)
            return replies, rest, ws.close_code, ws.close_reason
    replies, rest, code, reason = asyncio.run(run())
    assert len(replies) == 10                                  # one reply per 0.1 s message
    assert len(rest) == 1 and "text" in rest[0] and "result" in rest[0], rest    # the last result, then the error
    assert rest[0]["result"] and rest[0]["result"][-1]["end"] <= 1.0
    assert code == 1008 and reason == "timeout: no message for 0.5 s"
