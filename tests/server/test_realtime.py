"""OpenAI's realtime transcription protocol (``/v1/realtime?intent=transcription``) with the ``openai``
package's realtime client (``client.beta.realtime.connect``, which covers transcription sessions)
against a loopback server: server-VAD turns, manual commits, clearing, and client mistakes."""
from __future__ import annotations

import asyncio
import base64
import json

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from s2s_media.frontend.audio import resample
from server.client import pcm16
from server.realtime import INPUT_RATE
from server_fixtures import chunks, collect, session

CHUNK = INPUT_RATE // 10 * 2          # 0.1 s of PCM16 per append
COMPLETED = "conversation.item.input_audio_transcription.completed"


@pytest.fixture(scope="module")
def audio24(speech) -> bytes:
    """The test speech as 24 kHz PCM16, what OpenAI's pcm16 format is."""
    return pcm16(resample(speech, 16000, INPUT_RATE))


def v1_messages(srv, data: bytes) -> list[dict]:
    """What a v1 session gets for the same 24 kHz PCM16 in the same pieces (the realtime session's reference)."""
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": INPUT_RATE}, chunks(data, CHUNK)))
    assert code == 1000
    return messages


def v1_finals(srv, data: bytes) -> list[dict]:
    return [m for m in v1_messages(srv, data) if m["type"] == "final"]


def realtime(srv, token: str = "unused"):
    client = openai.AsyncOpenAI(api_key=token, base_url=srv.url("/v1", "http"), websocket_base_url=srv.url("/v1"))
    return client.beta.realtime.connect(model="s2s-media", extra_query={"intent": "transcription"})


async def events_until(conn, done, timeout: float = 60.0) -> list[dict]:
    """Server events as dicts until ``done(events)`` holds."""
    events: list[dict] = []
    async with asyncio.timeout(timeout):
        while not done(events):
            events.append((await conn.recv()).model_dump(exclude_none=True))
    return events


async def append(conn, data: bytes) -> None:
    for piece in chunks(data, CHUNK):
        await conn.input_audio_buffer.append(audio=base64.b64encode(piece).decode())


def test_server_vad_turns(serve, audio24):
    """Each segment of the server's endpointer is a turn: speech started, deltas, stopped, committed,
    created, completed; the transcripts are the v1 session's finals, at the same times."""
    srv = serve()
    finals = [f for f in v1_finals(srv, audio24) if f["text"]]
    assert len(finals) >= 2

    async def run():
        async with realtime(srv) as conn:
            created = (await conn.recv()).model_dump(exclude_none=True)
            await conn.transcription_session.update(session={
                "input_audio_format": "pcm16", "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "prompt": "Kubernetes"}})
            await append(conn, audio24)
            await conn.input_audio_buffer.commit()
            return created, await events_until(conn, lambda ev: sum(e["type"] == COMPLETED for e in ev) == len(finals))
    created, events = asyncio.run(run())
    assert created["type"] == "transcription_session.created"
    assert created["session"]["turn_detection"] == {"type": "server_vad"}
    updated = events.pop(0)
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_transcription"]["prompt"] == "Kubernetes"
    items = []
    for _ in finals:
        kinds = []
        while not kinds or kinds[-1] != COMPLETED:
            kinds.append(events.pop(0)["type"])
        items.append(kinds)
    for kinds in items:
        assert kinds[0] == "input_audio_buffer.speech_started" and kinds[-4:] == [
            "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "conversation.item.created", COMPLETED]
        assert set(kinds[1:-4]) <= {"conversation.item.input_audio_transcription.delta"}
    assert not events


def test_vad_events_carry_times_ids_and_deltas(serve, audio24):
    srv = serve()
    reference = v1_messages(srv, audio24)
    finals = [m for m in reference if m["type"] == "final" and m["text"]]

    async def run():
        async with realtime(srv) as conn:
            await append(conn, audio24)
            await conn.input_audio_buffer.commit()
            return await events_until(conn, lambda ev: sum(e["type"] == COMPLETED for e in ev) == len(finals))
    events = asyncio.run(run())
    by_type = lambda kind: [e for e in events if e["type"] == kind]    # noqa: E731
    completed = by_type(COMPLETED)
    assert [e["transcript"] for e in completed] == [f["text"] for f in finals]
    assert [e["audio_start_ms"] for e in by_type("input_audio_buffer.speech_started")] == \
        [round(f["start"] * 1000) for f in finals]
    assert [e["audio_end_ms"] for e in by_type("input_audio_buffer.speech_stopped")] == \
        [round(f["end"] * 1000) for f in finals]
    ids = [e["item_id"] for e in completed]
    assert len(set(ids)) == len(ids)
    assert [e.get("previous_item_id") for e in by_type("input_audio_buffer.committed")] == [None, *ids[:-1]]
    deltas = by_type("conversation.item.input_audio_transcription.delta")
    assert deltas and all(d["delta"] for d in deltas)
    for e, final in zip(completed, finals):
        # the deltas of an item add up, step by step, to partials the v1 session showed for its segment
        shown = {m["text"] for m in reference if m["type"] == "partial" and m["segment"] == final["segment"]}
        said = ""
        for d in deltas:
            if d["item_id"] == e["item_id"]:
                said += d["delta"]
                assert said in shown, (said, shown)


def test_manual_commits_without_turn_detection(serve, audio24):
    """turn_detection null: no speech events; each commit makes one item of everything appended since."""
    srv = serve()
    text = " ".join(f["text"] for f in v1_finals(srv, audio24) if f["text"])
    first_second = audio24[:INPUT_RATE * 2]
    second_text = " ".join(f["text"] for f in v1_finals(srv, first_second) if f["text"])

    async def run():
        async with realtime(srv) as conn:
            await conn.transcription_session.update(session={"turn_detection": None})
            await append(conn, audio24)
            await conn.input_audio_buffer.commit()
            assert (await conn.recv()).type == "transcription_session.created"
            one = await events_until(conn, lambda ev: ev and ev[-1]["type"] == COMPLETED)
            await append(conn, first_second)
            await conn.input_audio_buffer.commit()
            two = await events_until(conn, lambda ev: ev and ev[-1]["type"] == COMPLETED)
            return one, two
    one, two = asyncio.run(run())
    assert one[0]["type"] == "transcription_session.updated" and one[0]["session"].get("turn_detection") is None
    for events, expected in [(one, text), (two, second_text)]:
        kinds = {e["type"] for e in events}
        assert not kinds & {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"}
        assert [e["type"] for e in events if e["type"] != "conversation.item.input_audio_transcription.delta"][-3:] \
            == ["input_audio_buffer.committed", "conversation.item.created", COMPLETED]
        assert events[-1]["transcript"] == expected
    assert two[-1]["usage"]["seconds"] == pytest.approx(1.0, abs=0.05)
    committed = [e for e in one + two if e["type"] == "input_audio_buffer.committed"]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]


def test_client_mistakes_are_error_events_and_the_session_goes_on(serve, audio24):
    """A plain websockets client sending what the published schema forbids: each mistake gets an error event
    and the session carries on (clear, then append and commit still work)."""
    srv = serve()
    speech = [{"type": "input_audio_buffer.append", "audio": base64.b64encode(p).decode()}
              for p in chunks(audio24[:INPUT_RATE * 2], CHUNK)]

    async def run():
        async with connect(srv.url("/v1/realtime") + "?intent=transcription") as ws:
            assert json.loads(await ws.recv())["type"] == "transcription_session.created"
            mistakes = [{"type": "input_audio_buffer.append", "audio": "not base64!"},
                        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()},
                        {"type": "input_audio_buffer.commit", "event_id": "mine"},
                        {"type": "conversation.item.create"},
                        {"type": "session.update", "session": {}},
                        {"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}},
                        {"type": "transcription_session.update", "session": {"turn_detection": {"type": "push"}}},
                        "{not json", b"\0\0"]
            errors = []
            for m in mistakes:
                await ws.send(m if isinstance(m, (str, bytes)) else json.dumps(m))
                errors.append(json.loads(await ws.recv()))
            for m in [*speech, {"type": "input_audio_buffer.clear"}, *speech, {"type": "input_audio_buffer.commit"}]:
                await ws.send(json.dumps(m))
            events = []
            while not events or events[-1]["type"] != COMPLETED:
                events.append(json.loads(await ws.recv()))
            return errors, events
    errors, events = asyncio.run(run())
    assert all(e["type"] == "error" and e["error"]["type"] == "invalid_request_error" for e in errors), errors
    messages = [e["error"]["message"] for e in errors]
    assert messages[0] == "audio is not valid base64"
    assert "not a whole number of 2-byte pcm_s16le samples" in messages[1]
    assert errors[2]["error"]["code"] == "input_audio_buffer_commit_empty" and errors[2]["error"]["event_id"] == "mine"
    assert "unknown event type 'conversation.item.create'" in messages[3]
    assert "use transcription_session.update" in messages[4]
    assert "input_audio_format 'g711_ulaw' is not supported" in messages[5]
    assert errors[6]["error"]["param"] == "session.turn_detection"
    assert "not valid JSON" in messages[7] and "binary messages are not part of this protocol" in messages[8]
    assert "input_audio_buffer.cleared" in [e["type"] for e in events]
    completed = [e for e in events if e["type"] == COMPLETED]
    assert completed[-1]["usage"]["seconds"] <= 1.05            # the second second only: the first was cleared
    srv.wait_idle()
    assert srv.metric('s2s_errors_total{code="bad_request"}') == 0               # none of them ended the session


def test_intent_and_token(serve, audio24):
    srv = serve(token="s3cret")

    async def no_intent():
        async with connect(srv.url("/v1/realtime"), additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            return await collect(ws), ws.close_code
    events, code = asyncio.run(no_intent())
    assert code == 1008 and events[-1]["type"] == "error" and "intent=transcription" in events[-1]["error"]["message"]

    async def with_key(key: str):
        async with realtime(srv, key) as conn:
            return (await conn.recv()).type
    with pytest.raises(InvalidStatus) as e:
        asyncio.run(with_key("wrong"))
    assert e.value.response.status_code == 401
    assert asyncio.run(with_key("s3cret")) == "transcription_session.created"


def test_shutdown_transcribes_what_was_appended(serve, audio24):
    """A server that stops mid-session commits the buffer: its last item, then close 1001."""
    srv = serve()

    async def run():
        async with connect(srv.url("/v1/realtime") + "?intent=transcription") as ws:
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {"turn_detection": None}}))
            for piece in chunks(audio24[:INPUT_RATE * 2], CHUNK):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(piece).decode()}))
            await ws.send(json.dumps({"type": "ping"}))      # its error says every append before it was taken
            while json.loads(await ws.recv())["type"] != "error":
                pass
            srv.loop.call_soon_threadsafe(srv.app.stop)
            return await collect(ws), ws.close_code
    events, code = asyncio.run(run())
    assert code == 1001 and events[-1]["type"] == COMPLETED
    assert events[-1]["usage"]["seconds"] == pytest.approx(1.0, abs=0.05)
