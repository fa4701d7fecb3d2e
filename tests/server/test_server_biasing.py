"""Per-session hotwords, phrase lists and alternatives over real sockets: protocol v1's ``start`` and
the Vosk endpoint's ``config`` (in the message shapes of Vosk's example clients), and a ``config``
after audio (applied from the next audio on)."""
from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from server.client import pcm16
from server_fixtures import chunks
from test_server import check_stream, session

SR = 16000


def test_v1_hotwords_report_skipped_phrases_and_alternatives(serve, speech):
    srv = serve()
    start = {"sample_rate": SR, "hotwords": ["abc:2.5", {"phrase": "zebra", "boost": 1.0}, "Straße", "你好"],
             "max_alternatives": 3}
    messages, code = asyncio.run(session(srv.url(), start, chunks(pcm16(speech), 3200)))
    assert code == 1000
    ready = messages[0]
    assert len(ready["warnings"]) == 2            # an English model writes neither ß nor 你好
    assert "'ß' (LATIN SMALL LETTER SHARP S)" in ready["warnings"][0]
    assert "'你' (CJK UNIFIED IDEOGRAPH-4F60)" in ready["warnings"][1]
    finals = check_stream(messages, len(speech) / SR)
    for f in finals:
        alts = f["alternatives"]
        assert 1 <= len(alts) <= 3 and alts[0]["text"] == f["text"]
        assert all(set(a) == {"text", "confidence"} and 0.0 <= a["confidence"] <= 1.0 for a in alts)
        assert sum(a["confidence"] for a in alts) <= 1.0 + 1e-3
        assert [a["confidence"] for a in alts] == sorted((a["confidence"] for a in alts), reverse=True) \
            or len({a["text"] for a in alts}) == len(alts)


def test_v1_a_strong_hotword_changes_the_transcript(serve, speech):
    srv = serve()
    plain, _ = asyncio.run(session(srv.url(), {"sample_rate": SR}, chunks(pcm16(speech), 3200)))
    # the random model mostly writes p, x, j, n, l, u and '; a word of those it does not write alone
    biased, _ = asyncio.run(session(srv.url(), {"sample_rate": SR, "hotwords": ["jn:20"]},
                                    chunks(pcm16(speech), 3200)))
    text = lambda ms: " ".join(m["text"] for m in ms if m["type"] == "final")    # noqa: E731
    assert "jn" not in text(plain).split()
    assert "jn" in text(biased).split()


@pytest.mark.parametrize("start, error", [
    ({"hotwords": []}, "start: hotwords is empty"),
    ({"hotwords": "abc"}, "start: hotwords must be a list of phrases"),
    ({"hotwords": ["x"] * 1001}, "over the server's limit of 1000"),
    ({"hotwords": [{"phrase": "x", "weight": 2}]}, "start: hotwords[0]: expected"),
    ({"hotwords": ["你好"]}, None),        # every phrase skipped: a warning, not an error
    ({"max_alternatives": 11}, "start: max_alternatives must be between 0 and 10"),
])
def test_v1_bad_hotwords_and_alternatives(serve, speech, start, error):
    srv = serve()
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": SR, **start}, chunks(pcm16(speech[:SR]), 3200)))
    if error is None:
        assert code == 1000 and messages[0]["warnings"]
        return
    assert code == 1008 and messages[-1]["type"] == "error" and messages[-1]["code"] == "bad_request"
    assert error in messages[-1]["message"]


def test_the_hotword_limit_is_the_servers_setting(serve, speech):
    """``serve --max-hotwords``: v1's start and Vosk's config are held to it; within it they pass."""
    srv = serve(max_hotwords=2)
    audio = chunks(pcm16(speech[:SR]), 3200)
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": SR, "hotwords": ["a", "b", "c"]}, audio))
    assert code == 1008 and "start: hotwords has 3 phrases, over the server's limit of 2" in messages[-1]["message"]
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": SR, "hotwords": ["a", "b"]}, audio))
    assert code == 1000

    async def vosk_config(config):
        async with connect(srv.url("/vosk")) as ws:
            await ws.send(json.dumps({"config": config}))
            await ws.wait_closed()
            return ws.close_code, ws.close_reason
    code, reason = asyncio.run(vosk_config({"sample_rate": SR, "phrase_list": ["a", "b", "[unk]"]}))
    assert code == 1008 and "config.phrase_list has 3 phrases, over the server's limit of 2" in reason


async def vosk(url: str, config: dict | None, audio: bytes, later: dict | None = None, split: float = 0.5):
    """A Vosk example client (test_simple.py): config, 0.2 s audio messages each answered, eof. ``later``
    is a second config sent after ``split`` of the audio. Returns the replies, the last result, the close code."""
    replies = []
    pieces = chunks(audio, int(SR * 0.2) * 2)
    async with connect(url) as ws:
        if config is not None:
            await ws.send(json.dumps({"config": config}))
        for i, chunk in enumerate(pieces):
            if later is not None and i == int(len(pieces) * split):
                await ws.send(json.dumps({"config": later}))
            await ws.send(chunk)
            replies.append(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        last = json.loads(await ws.recv())
        await ws.wait_closed()
        return replies, last, ws.close_code


def results(replies: list[dict], last: dict) -> list[dict]:
    return [r for r in replies + [last] if "partial" not in r]


def test_vosk_phrase_list_restricts_results_to_its_phrases(serve, speech):
    srv = serve()
    config = {"sample_rate": SR, "phrase_list": ["yes", "no", "call mom", "[unk]"], "words": True}
    replies, last, code = asyncio.run(vosk(srv.url("/vosk"), config, pcm16(speech)))
    assert code == 1000
    words = [w["word"] for r in results(replies, last) for w in r["result"]]
    texts = " ".join(r["text"] for r in results(replies, last)).split()
    assert texts and set(texts) <= {"yes", "no", "call", "mom", "[unk]"}
    assert words == texts
    # without [unk], only the phrases themselves
    replies, last, code = asyncio.run(vosk(srv.url("/vosk"), {"sample_rate": SR, "phrase_list": ["yes", "no"]},
                                           pcm16(speech)))
    assert code == 1000
    assert set(" ".join(r["text"] for r in results(replies, last)).split()) <= {"yes", "no"}


def test_vosk_max_alternatives_gives_vosks_nbest_shape(serve, speech):
    srv = serve()
    replies, last, code = asyncio.run(vosk(srv.url("/vosk"), {"sample_rate": SR, "max_alternatives": 3,
                                                              "words": True}, pcm16(speech)))
    assert code == 1000
    res = results(replies, last)
    assert res and all(set(r) == {"alternatives"} for r in res)
    for r in res:
        alts = r["alternatives"]
        assert 1 <= len(alts) <= 3
        for a in alts:
            assert set(a) == {"confidence", "result", "text"} and 0.0 <= a["confidence"] <= 1.0
            assert [w["word"] for w in a["result"]] == a["text"].split()


def test_vosk_config_after_audio_applies_from_the_next_audio_on(serve, speech):
    srv = serve()
    replies, last, code = asyncio.run(vosk(srv.url("/vosk"), {"sample_rate": SR}, pcm16(speech),
                                           later={"phrase_list": ["yes", "no"], "max_alternatives": 2}))
    assert code == 1000                     # accepted, not 1008
    res = results(replies, last)
    plain = [r for r in res if "text" in r]
    nbest = [r for r in res if "alternatives" in r]
    assert plain and nbest                  # results before the change, then in the new shape
    assert res.index(nbest[0]) > res.index(plain[-1])
    after = " ".join(r["alternatives"][0]["text"] for r in nbest[1:]).split()
    assert set(after) <= {"yes", "no"}      # what was decoded after the change keeps to the phrases
    # times keep counting from the session's first audio
    starts = [w["start"] for r in res for w in (r.get("result") or r["alternatives"][0]["result"])]
    assert starts == sorted(starts) and starts[-1] <= len(speech) / SR + 0.05


def test_vosk_bad_phrase_list_is_refused(serve):
    srv = serve()

    async def run(config):
        async with connect(srv.url("/vosk")) as ws:
            await ws.send(json.dumps({"config": config}))
            await ws.wait_closed()
            return ws.close_code, ws.close_reason
    code, reason = asyncio.run(run({"sample_rate": SR, "phrase_list": []}))
    assert code == 1008 and "config.phrase_list is empty" in reason
    code, reason = asyncio.run(run({"phrase_list": ["yes"], "hotwords": ["no"]}))
    assert code == 1008 and "not both" in reason


def test_vosk_config_takes_hotwords_in_v1s_shape(serve, speech):
    srv = serve()
    plain = asyncio.run(vosk(srv.url("/vosk"), {"sample_rate": SR}, pcm16(speech)))
    biased = asyncio.run(vosk(srv.url("/vosk"), {"sample_rate": SR, "hotwords": [{"phrase": "jn", "boost": 20}]},
                              pcm16(speech)))
    words = lambda run: " ".join(r["text"] for r in results(run[0], run[1])).split()    # noqa: E731
    assert plain[2] == biased[2] == 1000
    assert "jn" not in words(plain) and "jn" in words(biased)
