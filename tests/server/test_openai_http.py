"""``POST /v1/audio/transcriptions`` with the real ``openai`` client and curl against a loopback server:
every response format, the token, bad uploads in OpenAI's error shape, batching with streaming
sessions, and sessions unaffected by bad requests."""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import subprocess
import threading

import numpy as np
import openai
import pytest
import soundfile as sf

from websockets.asyncio.client import connect

from server.client import STOP
from server.openai_http import prompt_hotwords
from server_fixtures import check_stream, chunks, collect, session

SR = 16000


def client(srv, token: str = "unused", **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=srv.url("/v1", "http"), max_retries=0, **kw)


def transcribe(srv, path, **kw):
    with open(path, "rb") as f:
        return client(srv, kw.pop("token", "unused")).audio.transcriptions.create(model="s2s-media", file=f, **kw)


def streamed_finals(srv, speech) -> list[dict]:
    """The finals of a v1 session of ``speech`` sent as the same floats the server reads from its wav (the
    reference for the HTTP endpoint's results)."""
    messages, code = asyncio.run(session(srv.url(), {"encoding": "f32le"}, chunks(speech.astype("<f4").tobytes(), 6400)))
    assert code == 1000
    return check_stream(messages, len(speech) / SR)


@pytest.fixture
def reference(serve, speech_wav, speech):
    """A server, and the finals a v1 session gets for the speech in ``speech_wav``."""
    srv = serve()
    return srv, [f for f in streamed_finals(srv, sf.read(speech_wav, dtype="float32")[0]) if f["text"]]


def test_json_and_text(reference, speech_wav):
    srv, finals = reference
    text = " ".join(f["text"] for f in finals)
    result = transcribe(srv, speech_wav)                           # response_format json (the default)
    assert result.text == text and text
    assert result.usage.seconds == pytest.approx(finals[-1]["end"], abs=0.05)
    assert transcribe(srv, speech_wav, response_format="text") == text + "\n"


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles(reference, speech_wav, fmt):
    srv, finals = reference
    body = transcribe(srv, speech_wav, response_format=fmt)
    sep = "," if fmt == "srt" else "."
    cue = re.compile(rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)")
    blocks = body.strip().split("\n\n")
    if fmt == "vtt":
        assert blocks.pop(0) == "WEBVTT"
    else:
        assert [b.split("\n")[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
        blocks = [b.split("\n", 1)[1] for b in blocks]
    assert len(blocks) == len(finals)
    for block, final in zip(blocks, finals):
        timing, text = block.split("\n")
        h, m, s, ms, h2, m2, s2, ms2 = map(int, cue.fullmatch(timing).groups())
        assert (h * 3600 + m * 60 + s + ms / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000) == \
            pytest.approx((final["start"], final["end"]), abs=1e-3)
        assert text == final["text"]


def test_verbose_json_words_and_segments(reference, speech_wav, speech):
    srv, finals = reference
    result = transcribe(srv, speech_wav, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert result.duration == pytest.approx(len(speech) / SR, abs=1e-3)
    assert result.text == " ".join(f["text"] for f in finals) and result.language == "english"
    assert [(s.id, s.start, s.end, s.text) for s in result.segments] == \
        [(i, f["start"], f["end"], f["text"]) for i, f in enumerate(finals)]
    assert [(w.word, w.start, w.end) for w in result.words] == \
        [(w["word"], w["start"], w["end"]) for f in finals for w in f["words"]]
    only_words = transcribe(srv, speech_wav, response_format="verbose_json", timestamp_granularities=["word"])
    assert only_words.segments is None and len(only_words.words) == len(result.words)
    default = transcribe(srv, speech_wav, response_format="verbose_json")        # segments, as OpenAI's default
    assert default.words is None and len(default.segments) == len(finals)


def test_curl(serve, speech_wav, tmp_path):
    srv = serve(token="s3cret", max_upload_mb=0.05)
    url = srv.url("/v1/audio/transcriptions", "http")

    def curl(*args: str) -> tuple[int, str]:
        run = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", url, "-F", "model=s2s-media", *args],
                             capture_output=True, text=True, timeout=60, check=True)
        body, status = run.stdout.rsplit("\n", 1)
        return int(status), body
    short = tmp_path / "short.wav"
    sf.write(short, sf.read(speech_wav)[0][:SR], SR, subtype="PCM_16")        # 32 KB: under the 50 KB limit
    status, body = curl("-H", "Authorization: Bearer s3cret", "-F", f"file=@{short}", "-F", "response_format=text")
    assert status == 200 and body.endswith("\n") and body.strip()
    status, body = curl("-F", f"file=@{short}")                                 # no token
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    for expect in ([], ["-H", "Expect: 100-continue"]):     # the body sent anyway, or held back until told
        status, body = curl("-H", "Authorization: Bearer s3cret", "-F", f"file=@{speech_wav}", *expect)   # 96 KB
        error = json.loads(body)["error"]
        assert status == 413 and error["code"] == "request_too_large" and "50000 bytes (--max-upload)" in \
            error["message"]
    status, body = curl("-H", "Authorization: Bearer s3cret", "-H", "Expect: 100-continue", "-F", f"file=@{short}")
    assert status == 200 and json.loads(body)["text"]


def test_the_token_is_the_api_key(serve, speech_wav):
    srv = serve(token="s3cret")
    with pytest.raises(openai.AuthenticationError) as e:
        transcribe(srv, speech_wav, token="wrong")
    assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
    assert transcribe(srv, speech_wav, token="s3cret").text
    assert srv.metric('s2s_refused_total{reason="unauthorized"}') == 1


def raw_post(srv, body, content_type: str, method: str = "POST", path: str = "/v1/audio/transcriptions",
             **headers) -> tuple[int, str]:
    """One request with http.client; ``body`` bytes, or an iterable of bytes sent chunked."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type, **headers},
                     encode_chunked=not isinstance(body, bytes))
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def form(boundary: str, fields: dict[str, str], file: bytes | None = None) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                     f'Content-Type: audio/wav\r\n\r\n'.encode() + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_plain_http_details(serve, speech_wav):
    """A chunked upload (no Content-Length), a head too long, a websocket path without the upgrade."""
    srv = serve()
    body = form("xyz", {"model": "s2s", "response_format": "text"}, speech_wav.read_bytes())
    status, text = raw_post(srv, (body[i:i + 7000] for i in range(0, len(body), 7000)),
                            "multipart/form-data; boundary=xyz")
    assert status == 200 and text == transcribe(srv, speech_wav, response_format="text")
    status, text = raw_post(srv, b"", "text/plain", method="GET", path="/healthz", **{"X-Padding": "x" * 70_000})
    assert status == 431
    status, text = raw_post(srv, b"", "text/plain", method="GET", path="/v1/stream")
    assert status == 426 and "websocket endpoint" in text
    assert srv.get("/healthz")[0] == 200


def test_bad_uploads_get_openai_errors_and_streaming_sessions_go_on(serve, speech_wav, speech, tmp_path):
    """Not audio, empty, too long, too large, no file, bad fields: each a 4xx in OpenAI's error shape,
    while a streaming session runs on the same server and gets exactly what it gets alone."""
    srv = serve(max_audio_s=1.0, max_upload_mb=0.2)
    alone = streamed_finals(srv, speech)
    long_wav = tmp_path / "long.wav"                       # 1.6 s: over the 1 s audio limit, under 200 KB
    sf.write(long_wav, speech[:int(1.6 * SR)], SR, subtype="PCM_16")
    big = tmp_path / "big.wav"                             # 240 KB: over the upload limit
    sf.write(big, np.resize(speech, int(7.5 * SR)), SR, subtype="PCM_16")
    text = tmp_path / "notes.wav"
    text.write_text("these are not the samples you are looking for\n" * 20)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    during: list = []
    halfway = threading.Event()

    async def paced_session():
        """The same session, sent at 2x real time; the bad uploads begin once half of it is in."""
        async with connect(srv.url()) as ws:
            await ws.send(json.dumps({"type": "start", "encoding": "f32le"}))
            pieces = chunks(speech.astype("<f4").tobytes(), 6400)
            for i, piece in enumerate(pieces):
                await ws.send(piece)
                await asyncio.sleep(0.05)
                if i == len(pieces) // 2:
                    halfway.set()
            await ws.send(STOP)
            return [m for m in await collect(ws) if m["type"] == "final"]
    streaming = threading.Thread(target=lambda: during.append(asyncio.run(paced_session())))
    streaming.start()
    assert halfway.wait(60)
    cases = [(text, {}, 400, "file", "invalid_file_format", "notes.wav: cannot decode audio"),
             (empty, {}, 400, "file", "invalid_file_format", "empty.wav: the file is empty (0 bytes)"),
             (long_wav, {}, 400, "file", "audio_too_long", "longer than the limit of 1 s (--max-audio)"),
             (big, {}, 413, "file", "request_too_large", "over the upload limit of 200000 bytes"),
             (long_wav, {"response_format": "docx"}, 400, "response_format", None, "response_format 'docx' is not"),
             (long_wav, {"timestamp_granularities": ["word"]}, 400, "timestamp_granularities[]", None,
              "needs response_format verbose_json"),
             (long_wav, {"extra_body": {"colour": "blue"}}, 400, "colour", None, "Unrecognized request argument")]
    for path, kw, status, param, code, message in cases:
        with pytest.raises(openai.APIStatusError) as e:
            transcribe(srv, path, **kw)
        assert e.value.status_code == status, (path, e.value.body)
        assert e.value.body["param"] == param and e.value.body["code"] == code, e.value.body
        assert e.value.body["type"] == "invalid_request_error" and message in e.value.body["message"], e.value.body
    status, body = raw_post(srv, form("b0undary", {"model": "s2s"}), "multipart/form-data; boundary=b0undary")
    assert status == 400 and json.loads(body)["error"]["param"] == "file" and "'file' field" in body
    status, body = raw_post(srv, b'{"model": "s2s"}', "application/json")
    assert status == 400 and "multipart/form-data" in json.loads(body)["error"]["message"]
    status, body = raw_post(srv, b"", "text/plain", method="GET")
    assert status == 405 and json.loads(body)["error"]["type"] == "invalid_request_error"
    streaming.join(120)
    assert [(f["text"], f["end"]) for f in during[0]] == [(f["text"], f["end"]) for f in alone]   # unaffected
    srv.wait_idle()
    assert srv.metric('s2s_refused_total{reason="max_audio"}') == 1
    assert srv.metric('s2s_refused_total{reason="max_upload"}') == 1
    assert srv.metric('s2s_errors_total{code="internal"}') == 0


def test_requests_are_batched_with_streaming_sessions(serve, speech_wav, speech):
    """A transcription and a v1 session running together share encoder calls. On a loaded machine one
    of the pair can finish before the other starts, so the pair runs up to three times; it fails when
    no encoder call ever decoded both."""
    srv = serve(engine={"max_wait_ms": 200.0})
    for _ in range(3):
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(streamed_finals(srv, speech))),
                   threading.Thread(target=lambda: results.append(transcribe(srv, speech_wav)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 2
        batches = srv.metric("s2s_decode_batch_size_count")
        if srv.metric('s2s_decode_batch_size_bucket{le="1"}') < batches:     # some calls decoded both
            return
    pytest.fail("three concurrent pairs, and no encoder call decoded a transcription with a v1 session")


def test_prompt_becomes_hotwords(serve, speech_wav, monkeypatch):
    """``prompt`` is parsed into hotwords and reaches the request's engine stream."""
    assert prompt_hotwords("Kubernetes, kubectl:3; Nguyen.\n\n  san  francisco ,Kubernetes") == \
        ("Kubernetes", "kubectl:3", "Nguyen", "san francisco")
    assert prompt_hotwords("") == () and prompt_hotwords(" , ;\n") == ()
    srv = serve()
    opened = []
    real_open = srv.app.engine.open

    def spy(*args, **kw):
        es = real_open(*args, **kw)
        opened.append(es.options)
        return es
    monkeypatch.setattr(srv.app.engine, "open", spy)
    transcribe(srv, speech_wav, prompt="Kubernetes, Nguyen:2.5")
    transcribe(srv, speech_wav)
    assert len(opened) == 2 and opened[1] is None
    assert opened[0].context is not None      # the prompt's two hotwords, compiled for the request's stream
