"""Hostile clients (issue #17): malformed numbers and nesting are the client's error, never the server's."""
from __future__ import annotations

import asyncio
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
