"""Punctuation and casing of the server's finals (issue #13 item 2): on by default with ``serve``, off
with ``--no-punctuation`` or a v1 session's ``punctuation: false``; partials stay raw; every word
keeps its times; the same in the Vosk, OpenAI HTTP and realtime endpoints."""
from __future__ import annotations

import asyncio
import base64
import json

import openai
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from s2s_media.cli.main import build_parser
from s2s_media.cli.serve import load_punctuator
from s2s_media.frontend.audio import resample
from s2s_media.inference.punctuation import Punctuator
from s2s_media.text.punctuation import strip_word
from server.client import pcm16
from server.realtime import INPUT_RATE
from server_fixtures import chunks, collect, session

RAW = set("abcdefghijklmnopqrstuvwxyz' ")


def v1(srv, speech, **start) -> list[dict]:
    messages, code = asyncio.run(session(srv.url(), {"encoding": "f32le", **start},
                                         chunks(speech.astype("<f4").tobytes(), 6400)))
    assert code == 1000
    return messages


def finals(messages) -> list[dict]:
    return [m for m in messages if m["type"] == "final"]


def assert_written(written: list[dict], raw: list[dict]) -> None:
    """``written`` finals are ``raw`` ones with case and marks restored word for word, times unchanged."""
    assert len(written) == len(raw)
    for w, r in zip(written, raw):
        assert [strip_word(x) for x in w["text"].split()] == r["text"].split()
        assert [x["word"] for x in w["words"]] == w["text"].split()
        assert [(x["start"], x["end"], x["confidence"]) for x in w["words"]] == \
            [(x["start"], x["end"], x["confidence"]) for x in r["words"]]
        assert (w["start"], w["end"], w["segment"]) == (r["start"], r["end"], r["segment"])
    assert any(w["text"] != r["text"] for w, r in zip(written, raw))        # something was restored


def test_v1_finals_are_written_partials_stay_raw_and_a_session_can_opt_out(serve, punctuator, speech):
    srv = serve(punctuator=punctuator)
    written, raw = v1(srv, speech), v1(srv, speech, punctuation=False)
    assert all(set(f["text"]) <= RAW for f in finals(raw))
    assert_written(finals(written), finals(raw))
    partials = [m["text"] for m in written if m["type"] == "partial"]
    assert partials and partials == [m["text"] for m in raw if m["type"] == "partial"]
    assert all(set(p) <= RAW for p in partials)
    bad = asyncio.run(session(srv.url(), {"punctuation": "no"}, []))
    assert bad[0][-1]["code"] == "bad_request" and "punctuation must be true or false" in bad[0][-1]["message"]


def test_without_a_punctuator_finals_are_raw(serve, speech):
    srv = serve()                                 # what serve --no-punctuation builds
    assert all(set(f["text"]) <= RAW for f in finals(v1(srv, speech)))


def test_vosk_results_are_written(serve, punctuator, speech):
    srv = serve(punctuator=punctuator)
    messages, _ = asyncio.run(session(srv.url(), {"punctuation": False}, chunks(pcm16(speech), 3200)))
    raw = [w for f in finals(messages) for w in f["words"]]

    async def run():
        replies = []
        async with connect(srv.url("/vosk")) as ws:
            for piece in chunks(pcm16(speech), 3200):
                await ws.send(piece)
                replies.append(json.loads(await ws.recv()))
            await ws.send('{"eof": 1}')
            return replies + await collect(ws)
    replies = asyncio.run(run())
    results = [r for r in replies if r.get("text")]
    assert all(set(r["partial"]) <= RAW for r in replies if "partial" in r)
    words = [w for r in results for w in r["result"]]
    assert " ".join(r["text"] for r in results).split() == [w["word"] for w in words]
    assert [(strip_word(w["word"]), w["start"], w["end"]) for w in words] == \
        [(w["word"], w["start"], w["end"]) for w in raw]
    assert [w["word"] for w in words] != [w["word"] for w in raw]


def test_http_and_realtime_results_are_written(serve, punctuator, speech, speech_wav):
    srv = serve(punctuator=punctuator)
    written = [f for f in finals(v1(srv, sf.read(speech_wav, dtype="float32")[0])) if f["text"]]
    client = openai.OpenAI(api_key="unused", base_url=srv.url("/v1", "http"), max_retries=0)
    with open(speech_wav, "rb") as f:
        result = client.audio.transcriptions.create(model="s2s-media", file=f, response_format="verbose_json",
                                                    timestamp_granularities=["word"])
    assert result.text == " ".join(f["text"] for f in written)
    assert [w.word for w in result.words] == result.text.split()

    audio24 = pcm16(resample(speech, 16000, INPUT_RATE))
    reference = [f for f in finals(asyncio.run(session(srv.url(), {"sample_rate": INPUT_RATE},
                                                       chunks(audio24, 4800)))[0]) if f["text"]]

    async def run():
        async with connect(srv.url("/v1/realtime") + "?intent=transcription") as ws:
            for piece in chunks(audio24, 4800):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}))
            await ws.send('{"type": "input_audio_buffer.commit"}')
            events = []
            while sum(e["type"].endswith(".completed") for e in events) < len(reference):
                events.append(json.loads(await ws.recv()))
            return events
    events = asyncio.run(run())
    assert [e["transcript"] for e in events if e["type"].endswith(".completed")] == [f["text"] for f in reference]
    deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
    assert deltas and all(set(d) <= RAW for d in deltas)                  # deltas come from raw partials


def test_serve_loads_the_bundled_punctuator_unless_told_not_to(recognizer, tmp_path):
    parse = build_parser().parse_args
    on = parse(["serve"])
    assert on.punctuation and isinstance(load_punctuator(recognizer, on.punctuation, on.punctuation_model), Punctuator)
    off = parse(["serve", "--no-punctuation"])
    assert load_punctuator(recognizer, off.punctuation, off.punctuation_model) is None
    from s2s_media.errors import UserError
    with pytest.raises(UserError):
        load_punctuator(recognizer, True, str(tmp_path / "missing.pt"))


def test_restore_final_keeps_each_word_on_its_times(punctuator):
    from s2s_media.inference.events import Final, Word
    words = [Word("is", 0.1, 0.2, 0.9), Word("it", 0.2, 0.3, 0.8), Word("you", 0.3, 0.5, None)]
    written = punctuator.restore_final(Final(3, "is it you", 0.0, 0.6, words))
    assert written.text == " ".join(w.word for w in written.words) and written.text != "is it you"
    assert [strip_word(w.word) for w in written.words] == ["is", "it", "you"]
    assert [(w.start, w.end, w.confidence) for w in written.words] == [(w.start, w.end, w.confidence) for w in words]
    assert (written.segment, written.start, written.end) == (3, 0.0, 0.6)
    odd = punctuator.restore_final(Final(0, "is it you", 0.0, 0.6, words[:2]))     # words not the text's words
    assert [strip_word(w) for w in odd.text.split()] == ["is", "it", "you"] and len(odd.words) == 2
