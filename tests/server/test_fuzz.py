"""A protocol fuzzer (issue #17): random and mutated v1 and Vosk message sequences against a live
server on loopback. Every sequence ends in a documented error code or a clean close, never
``internal``; a real client is served correctly afterwards. Examples are bounded (hypothesis,
no example database) so the test takes seconds."""
from __future__ import annotations

import asyncio
import json

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import STOP, pcm16
from server.protocol import CLOSE_CODES
from server_fixtures import chunks, collect

EXAMPLES = 30                                    # per protocol
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLIENT_ERRORS = set(CLOSE_CODES) - {"internal"}
CLOSES = {1000, 1001} | {code for name, code in CLOSE_CODES.items() if name != "internal"}

# any JSON value, small; floats include NaN and infinities (json.dumps writes them as NaN/Infinity)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3),
                           max_leaves=8)
field_values = st.sampled_from([16000, 8000, 48000, 44100.0, 7999, 0, -1, "16000", "pcm_s16le", "f32le", "opus",
                                True, False, None]) | json_values
audio = (st.binary(max_size=3201)
         | st.integers(1, 4).map(lambda n: pcm16(np.zeros(800 * n, np.float32)))
         | st.integers(1, 4).map(lambda n: b"\0\0\x80\x7f" * 400 * n))       # f32le: includes NaN bit patterns


def mutate(text: str, data) -> str:
    """Replace, insert or cut at a random place of a valid message."""
    i = data.draw(st.integers(0, len(text)))
    how = data.draw(st.sampled_from(["replace", "insert", "cut"]))
    c = data.draw(st.sampled_from(list('{}[]",:0e-.xN ') + ["\x00", "é"]))
    return text[:i] + c + text[i + 1:] if how == "replace" else text[:i] + c + text[i:] if how == "insert" \
        else text[:i]


@st.composite
def v1_start(draw) -> str:
    fields = draw(st.dictionaries(st.sampled_from(["sample_rate", "encoding", "partials", "words", "rate"]),
                                  field_values, max_size=3))
    return json.dumps({"type": draw(st.sampled_from(["start", "start", "stop", "hello", 1])), **fields})


@st.composite
def v1_sequences(draw) -> list[str | bytes]:
    valid = ['{"type":"start"}', *[b"\0\1" * 800] * 3, STOP]
    kind = draw(st.sampled_from(["random", "mutated"]))
    if kind == "mutated":             # a valid session with one message changed, dropped or repeated
        seq = list(valid)
        i = draw(st.integers(0, len(seq) - 1))
        op = draw(st.sampled_from(["change", "drop", "repeat", "swap"]))
        if op == "change":
            seq[i] = mutate(seq[i], draw(st.data())) if isinstance(seq[i], str) else draw(audio)
        elif op == "drop":
            del seq[i]
        elif op == "repeat":
            seq.insert(i, seq[i])
        else:
            j = draw(st.integers(0, len(seq) - 1))
            seq[i], seq[j] = seq[j], seq[i]
        return seq
    message = v1_start() | audio | st.just(STOP) | json_values.map(json.dumps) | st.text(max_size=30)
    return draw(st.lists(message, min_size=1, max_size=6))


@st.composite
def vosk_sequences(draw) -> list[str | bytes]:
    config = st.dictionaries(st.sampled_from(["sample_rate", "words", "phrase_list", "max_alternatives"]),
                             field_values, max_size=3).map(lambda c: json.dumps({"config": c}))
    eof = st.sampled_from(['{"eof": 1}', '{"eof": 0}', '{"eof": null}'])
    message = config | audio.filter(lambda b: len(b) % 2 == 0) | audio | eof | json_values.map(json.dumps) \
        | st.text(max_size=30)
    seq = draw(st.lists(message, min_size=1, max_size=6))
    if draw(st.booleans()):
        seq = [mutate(m, draw(st.data())) if isinstance(m, str) and draw(st.booleans()) else m for m in seq]
    return seq


async def play(url: str, seq: list[str | bytes], vosk: bool) -> tuple[list, int | None, str, bool]:
    """Send ``seq``, then read until the server closes (or close ourselves when the sequence did not
    end the session); returns the replies, the close code and reason, and whether we closed first."""
    ends = ('{"eof"',) if vosk else (STOP,)
    async with connect(url, max_size=None) as ws:
        replies = []
        try:
            for m in seq:
                await ws.send(m)
                if vosk and isinstance(m, bytes):
                    replies.append(await asyncio.wait_for(ws.recv(), 10))    # one reply per audio message
        except ConnectionClosed:
            pass
        ended = any(isinstance(m, str) and m.startswith(ends) for m in seq)
        try:
            replies += await asyncio.wait_for(collect(ws), 10 if ended else 0.3)
            return replies, ws.close_code, ws.close_reason, False
        except TimeoutError:
            await ws.close()
            return replies, ws.close_code, ws.close_reason, True


def fuzz(srv, path: str, sequences) -> None:
    """Play ``EXAMPLES`` sequences at ``path``: errors are client errors, closes are documented ones."""
    vosk = path == "/vosk"

    @SETTINGS
    @given(seq=sequences)
    def one(seq):
        replies, code, reason, we_closed = asyncio.run(play(srv.url(path), seq, vosk))
        replies = [json.loads(r) if isinstance(r, str) else r for r in replies]
        errors = [r for r in replies if isinstance(r, dict) and r.get("type") == "error"]
        assert all(e["code"] in CLIENT_ERRORS for e in errors), errors
        if not we_closed:
            assert code in CLOSES, (code, reason)
            if code != 1000:
                assert reason.split(":")[0] in CLIENT_ERRORS or code == 1009, (code, reason)
    one()


def test_fuzz_v1_and_vosk_then_a_real_client_is_served(serve, speech):
    srv = serve(start_timeout_s=2, idle_timeout_s=2, max_per_client=0)
    fuzz(srv, "/v1/stream", v1_sequences())
    fuzz(srv, "/vosk", vosk_sequences())
    srv.wait_idle()
    assert srv.metric('s2s_errors_total{code="internal"}') == 0
    assert srv.metric("s2s_sessions_total") >= 2 * EXAMPLES

    async def real_client():
        async with connect(srv.url()) as ws:
            await ws.send('{"type":"start"}')
            for c in chunks(pcm16(speech), 3200):
                await ws.send(c)
            await ws.send(STOP)
            return await collect(ws), ws.close_code
    replies, code = asyncio.run(real_client())
    kinds = [r["type"] for r in replies]
    assert kinds[0] == "ready" and "final" in kinds and kinds[-1] == "end" and code == 1000
