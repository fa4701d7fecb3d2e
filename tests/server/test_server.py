"""The websocket server over real sockets with a real websockets client: protocol v1, errors, HTTP
routes, limits, failure isolation and the Vosk protocol."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.client import pcm16
from server_fixtures import check_stream, chunks, collect, session
from server.protocol import MAX_MESSAGE_BYTES

SR = 16000


def test_happy_path_pcm16(serve, speech):
    srv = serve()
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": SR, "encoding": "pcm_s16le"},
                                         chunks(pcm16(speech), 3200)))
    assert code == 1000
    finals = check_stream(messages, len(speech) / SR)
    assert len(finals) >= 2            # the 1 s maximum segment ends segments mid-stream
    partials = [m for m in messages if m["type"] == "partial"]
    assert all(a["text"] != b["text"] for a, b in zip(partials, partials[1:]) if a["segment"] == b["segment"])
    assert srv.metric("s2s_audio_seconds_total") == pytest.approx(len(speech) / SR, abs=1e-3)


def test_f32le_at_8khz_without_partials_or_words(serve, speech):
    import librosa
    wav8 = librosa.resample(speech, orig_sr=SR, target_sr=8000).astype("<f4")
    srv = serve()
    messages, code = asyncio.run(session(
        srv.url(), {"sample_rate": 8000, "encoding": "f32le", "partials": False, "words": False},
        chunks(wav8.tobytes(), 4 * 800)))
    assert code == 1000
    assert messages[0]["sample_rate"] == 8000
    check_stream(messages, len(wav8) / 8000, words=False, partials=False)


def test_defaults_and_an_empty_stream(serve):
    """A start without fields uses the defaults; a stream with no audio ends with end and close 1000."""
    messages, code = asyncio.run(session(serve().url(), {}, []))
    assert [m["type"] for m in messages] == ["ready", "end"] and code == 1000
    assert messages[0]["sample_rate"] == 16000


TOO_LARGE = b"\0" * (MAX_MESSAGE_BYTES + 2)


@pytest.mark.parametrize("first, then, code, close", [
    ("{not json", [], "bad_request", 1008),
    (b"\0\0" * 100, [], "bad_request", 1008),                              # audio before start
    ('{"type":"hello"}', [], "bad_request", 1008),
    ('{"type":"start","sample_rate":4000}', [], "bad_request", 1008),
    ('{"type":"start","sample_rate":"16k"}', [], "bad_request", 1008),
    ('{"type":"start","words":"yes"}', [], "bad_request", 1008),
    ('{"type":"start","rate":16000}', [], "bad_request", 1008),           # unknown field
    ('{"type":"start","encoding":"opus"}', [], "unsupported_encoding", 1003),
    ('{"type":"start"}', [b"\0\0\0"], "bad_request", 1008),               # half a sample
    ('{"type":"start"}', ['{"type":"start"}'], "bad_request", 1008),
])
def test_errors_send_a_message_then_close(serve, first, then, code, close):
    srv = serve()

    async def run():
        async with connect(srv.url(), max_size=None) as ws:
            for m in [first, *then]:
                await ws.send(m)
            return await collect(ws), ws.close_code
    replies, close_code = asyncio.run(run())
    assert replies[-1]["type"] == "error" and replies[-1]["code"] == code, replies
    assert replies[-1]["message"]
    assert close_code == close
    assert srv.metric(f's2s_errors_total{{code="{code}"}}') == 1


@pytest.mark.parametrize("first, then", [
    ('{"type":"start"}', [TOO_LARGE]),
    ('{"type":"start","x":"' + "a" * MAX_MESSAGE_BYTES + '"}', []),
])
def test_too_large_is_refused_at_the_frame_header(serve, first, then):
    """websockets refuses a message over 1 MiB before reading it (close 1009); the server counts it."""
    srv = serve()

    async def run():
        async with connect(srv.url(), max_size=None) as ws:
            try:
                for m in [first, *then]:
                    await ws.send(m)
            except ConnectionClosed:
                pass
            return await collect(ws), ws.close_code, ws.close_reason
    replies, close_code, reason = asyncio.run(run())
    assert all(r["type"] != "error" for r in replies) and close_code == 1009
    assert f"exceeds limit of {MAX_MESSAGE_BYTES} bytes" in reason
    srv.wait_idle()
    assert srv.metric('s2s_errors_total{code="too_large"}') == 1
    assert srv.metric('s2s_refused_total{reason="too_large"}') == 1


def test_token_by_header_or_query(serve, speech):
    srv = serve(token="s3cret")
    audio = chunks(pcm16(speech[:SR]), 3200)
    for kw, url in [({"additional_headers": {"Authorization": "Bearer s3cret"}}, srv.url()),
                    ({}, srv.url() + "?token=s3cret")]:
        messages, code = asyncio.run(session(url, {}, audio, **kw))
        assert code == 1000 and messages[-1]["type"] == "end"
    for kw, url in [({}, srv.url()), ({"additional_headers": {"Authorization": "Bearer wrong"}}, srv.url()),
                    ({}, srv.url("/vosk") + "?token=wrong")]:
        with pytest.raises(InvalidStatus) as e:
            asyncio.run(session(url, {}, [], **kw))
        assert e.value.response.status_code == 401
    assert srv.metric('s2s_errors_total{code="unauthorized"}') == 3
    assert srv.get("/healthz")[0] == 200        # the page, health and metrics need no token
    assert srv.get("/")[0] == 200


def test_http_routes(serve, speech):
    srv = serve()
    asyncio.run(session(srv.url(), {}, chunks(pcm16(speech[:SR]), 3200)))
    assert srv.get("/healthz")[:2] == (200, "text/plain; charset=utf-8")
    status, kind, page = srv.get("/")
    assert status == 200 and kind.startswith("text/html") and "/static/app.js" in page
    status, kind, js = srv.get("/static/app.js")
    assert status == 200 and "javascript" in kind and "/v1/stream" in js
    status, _, worklet = srv.get("/static/pcm-worklet.js")
    assert status == 200 and "registerProcessor" in worklet
    assert srv.get("/static/../app.py")[0] == 404
    assert srv.get("/nope")[0] == 404
    status, kind, text = srv.get("/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    for line in ["# TYPE s2s_sessions_active gauge", "s2s_sessions_active 0", "# TYPE s2s_sessions_total counter",
                 "s2s_sessions_total 1", "# TYPE s2s_audio_seconds_total counter", "s2s_audio_seconds_total 1",
                 "# TYPE s2s_chunk_latency_seconds histogram", 's2s_errors_total{code="bad_request"} 0',
                 "# TYPE s2s_errors_total counter"]:
        assert line in text.splitlines(), line
    chunks_decoded = srv.metric("s2s_chunk_latency_seconds_count")
    assert chunks_decoded > 0 and srv.metric('s2s_chunk_latency_seconds_bucket{le="+Inf"}') == chunks_decoded
    with pytest.raises(InvalidStatus) as e:                  # a websocket to an unknown path
        asyncio.run(session(srv.url("/v2/stream"), {}, []))
    assert e.value.response.status_code == 404


def test_max_sessions(serve):
    srv = serve(max_sessions=1)

    async def run():
        async with connect(srv.url()) as first:
            await first.send('{"type":"start"}')
            assert json.loads(await first.recv())["type"] == "ready"
            async with connect(srv.url()) as second:
                error = json.loads(await second.recv())
                await second.wait_closed()
                assert (error["code"], second.close_code) == ("overloaded", 1013)
            assert srv.metric("s2s_sessions_active") == 1
            await first.send('{"type":"stop"}')
            assert [m["type"] for m in await collect(first)] == ["end"]
        # the slot is free again
        messages, code = await session(srv.url(), {}, [])
        assert code == 1000
    asyncio.run(run())


@pytest.mark.parametrize("before_start", [True, False])
def test_idle_timeout(serve, before_start):
    srv = serve(idle_timeout_s=0.5)

    async def run():
        async with connect(srv.url()) as ws:
            if not before_start:
                await ws.send('{"type":"start"}')
                await ws.send(b"\0\0" * 1600)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            replies = await collect(ws)
            return replies, ws.close_code, loop.time() - t0
    replies, code, waited = asyncio.run(run())
    assert replies[-1]["code"] == "timeout" and code == 1008
    assert "no message for 0.5 s" in replies[-1]["message"]
    assert 0.4 < waited < 3
    if not before_start:              # what was decoded gets its final before the error
        assert replies[-2]["type"] == "final" and replies[-2]["end"] == pytest.approx(0.1, abs=0.05), replies


def test_maximum_session_length(serve):
    srv = serve(max_session_s=1.0)

    async def run():
        async with connect(srv.url()) as ws:
            await ws.send('{"type":"start"}')

            async def real_time():       # a well-behaved client: 0.1 s of audio every 0.1 s
                try:
                    for _ in range(30):
                        await ws.send(b"\0\0" * 1600)
                        await asyncio.sleep(0.1)
                except ConnectionClosed:
                    pass
            sender = asyncio.create_task(real_time())
            replies = await collect(ws)
            await sender
            return replies, ws.close_code
    replies, code = asyncio.run(run())
    assert replies[-1]["code"] == "timeout" and "maximum length of 1 s" in replies[-1]["message"]
    assert code == 1008
    assert replies[-2]["type"] == "final" and replies[-2]["end"] > 0.5, replies[-3:]   # the speech is kept


class PoisonableRecognizer:
    """A real recognizer whose decoding raises for streams fed audio at 22050 Hz (a server-side failure)."""

    def __init__(self, rec):
        self.rec = rec

    def create_stream(self):
        return PoisonableStream(self.rec.create_stream())

    def is_ready(self, s):
        return self.rec.is_ready(s.inner)

    def decode_streams(self, streams):
        if any(s.poisoned for s in streams):
            raise RuntimeError("injected failure")
        self.rec.decode_streams([s.inner for s in streams])


class PoisonableStream:
    def __init__(self, inner):
        self.inner, self.poisoned = inner, False

    def accept_waveform(self, samples, sample_rate=16000):
        self.poisoned = self.poisoned or sample_rate == 22050
        self.inner.accept_waveform(samples, sample_rate)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_failing_session_does_not_affect_another(serve, recognizer, speech):
    srv = serve(PoisonableRecognizer(recognizer))
    audio = chunks(pcm16(speech), 3200)

    async def run():
        return await asyncio.gather(session(srv.url(), {"sample_rate": 22050}, audio, stop=False),
                                    session(srv.url(), {}, audio))
    (bad, bad_code), (good, good_code) = asyncio.run(run())
    assert bad[-1]["code"] == "internal" and bad_code == 1011
    assert good_code == 1000
    check_stream(good, len(speech) / SR)
    assert srv.metric('s2s_errors_total{code="internal"}') == 1
    # and the server still serves
    assert asyncio.run(session(srv.url(), {}, audio))[1] == 1000


def test_back_pressure_bounds_the_backlog(serve, speech):
    """A client far ahead of real time: the server stops reading while a session's backlog is full."""
    srv = serve(engine={"max_buffered_s": 1.0})
    audio = chunks(pcm16(np.tile(speech, 4)), 3200)     # 0.1 s messages
    backlog = []

    async def watch():
        while True:
            backlog.extend(s.es.backlog_s() for s in list(srv.app.sessions) if s.es is not None)
            await asyncio.sleep(0.005)

    async def run():
        watcher = asyncio.create_task(watch())
        try:
            return await session(srv.url(), {}, audio)
        finally:
            watcher.cancel()
    messages, code = asyncio.run(run())
    assert code == 1000 and messages[-1]["type"] == "end"
    assert backlog and max(backlog) <= 1.0 + 0.1 + 1e-6      # the limit + one message


def test_vosk_protocol_round_trip(serve, speech):
    srv = serve()
    data = pcm16(speech)

    async def run():
        replies = []
        async with connect(srv.url("/vosk")) as ws:
            await ws.send('{ "config" : { "sample_rate" : 16000 } }')
            for chunk in chunks(data, int(SR * 0.2) * 2):          # 0.2 s per message, like Vosk's test.py
                await ws.send(chunk)
                replies.append(json.loads(await ws.recv()))
            await ws.send('{"eof" : 1}')
            last = json.loads(await ws.recv())
            await ws.wait_closed()
            return replies, last, ws.close_code
    replies, last, code = asyncio.run(run())
    assert len(replies) == len(chunks(data, int(SR * 0.2) * 2))      # one reply per audio message
    assert all(set(r) in ({"partial"}, {"text", "result"}) for r in replies), replies
    assert any("partial" in r and r["partial"] for r in replies)
    assert any("text" in r for r in replies)                        # a mid-stream endpoint
    assert set(last) == {"text", "result"} and code == 1000
    words = [w for r in replies + [last] if "result" in r for w in r["result"]]
    assert words and all(set(w) == {"conf", "start", "end", "word"} for w in words)


def test_vosk_8khz_without_words_and_errors(serve, speech):
    import librosa
    srv = serve()
    wav8 = librosa.resample(speech, orig_sr=SR, target_sr=8000)

    async def run():
        async with connect(srv.url("/vosk")) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": 8000.0, "words": 0, "max_alternatives": 0}}))
            await ws.send(pcm16(wav8))
            reply = json.loads(await ws.recv())
            await ws.send('{"eof" : 1}')
            last = json.loads(await ws.recv())
        async with connect(srv.url("/vosk")) as bad:
            await bad.send('{"config": {"sample_rate": 100}}')
            await bad.wait_closed()
        return reply, last, bad.close_code, bad.close_reason
    reply, last, code, reason = asyncio.run(run())
    assert set(reply) <= {"partial", "text"} and set(last) == {"text"}
    assert code == 1008 and reason.startswith("bad_request: config.sample_rate")


def test_tls(serve, tmp_path, speech):
    import ssl
    import subprocess
    import urllib.request
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    srv = serve(certfile=str(cert), keyfile=str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    messages, code = asyncio.run(session(srv.url(scheme="wss"), {}, chunks(pcm16(speech[:SR]), 3200), ssl=trust))
    assert code == 1000 and messages[-1]["type"] == "end"
    with urllib.request.urlopen(srv.url("/healthz", "https"), context=trust, timeout=10) as r:
        assert r.status == 200
