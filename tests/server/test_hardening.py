"""Hostile clients (issue #17): malformed numbers and nesting are the client's error, never the server's."""
from __future__ import annotations

import asyncio
import http.client
import json
import logging

import pytest
from websockets.asyncio.client import connect

from server_fixtures import collect

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
