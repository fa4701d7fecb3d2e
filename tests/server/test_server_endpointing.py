"""Endpoint rules per session (v1 ``start``: ``vad``, ``trailing_silence``, ``max_segment``) and as
``serve`` flags, over real sockets with the tiny random model and espeak speech."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from s2s_media.cli.main import main
from server.client import pcm16
from server.protocol import ProtocolError, parse_start
from server_fixtures import chunks
from test_server import check_stream, session

SR = 16000


def _finals(messages):
    return [m for m in messages if m["type"] == "final"]


def test_v1_max_segment_replaces_the_servers(serve, speech):
    srv = serve()      # the fixture's recognizer ends segments at 1 s
    audio = chunks(pcm16(speech), 3200)
    short, _ = asyncio.run(session(srv.url(), {"sample_rate": SR}, audio))
    long, code = asyncio.run(session(srv.url(), {"sample_rate": SR, "max_segment": 20, "trailing_silence": 30},
                                     audio))
    assert code == 1000
    duration = len(speech) / SR
    assert len(_finals(short)) >= int(duration)                  # cut every second
    finals = check_stream(long, duration)
    assert len(finals) == 1 and finals[0]["end"] >= duration - 0.05   # one segment: the whole input


def test_v1_trailing_silence_with_a_vad_cuts_at_a_pause(serve, speech):
    srv = serve()
    gap = np.zeros(2 * SR, np.float32)
    wav = np.concatenate([speech, gap, speech])
    messages, code = asyncio.run(session(srv.url(), {"sample_rate": SR, "vad": "silero", "trailing_silence": 0.8,
                                                     "max_segment": 20}, chunks(pcm16(wav), 3200)))
    assert code == 1000
    finals = check_stream(messages, len(wav) / SR)
    first_end = len(speech) / SR
    # the first final ends in the pause (0.8 s after the speech), not at the end of the input
    assert any(first_end + 0.4 <= f["end"] <= first_end + 1.6 for f in finals), [(f["start"], f["end"]) for f in finals]


@pytest.mark.parametrize("start, error", [
    ({"vad": "webrtc"}, "start: vad must be one of auto, silero, energy, ctc"),
    ({"vad": 1}, "start: vad must be one of"),
    ({"trailing_silence": 0}, "start: trailing_silence must be above 0 and at most 30 seconds, got 0"),
    ({"trailing_silence": "1"}, "start: trailing_silence must be a number of seconds"),
    ({"max_segment": 0.5}, "start: max_segment must be at least 1 and at most 60 seconds, got 0.5"),
    ({"max_segment": 61}, "start: max_segment must be at least 1 and at most 60 seconds, got 61"),
    ({"max_segment": True}, "start: max_segment must be a number of seconds"),
])
def test_v1_bad_endpoint_fields_are_one_line_errors(start, error):
    with pytest.raises(ProtocolError, match="^" + error.replace("(", r"\(")) as e:
        parse_start(json.dumps({"type": "start", **start}))
    assert e.value.code == "bad_request" and "\n" not in e.value.message


def test_v1_endpoint_fields_parse():
    req = parse_start('{"type": "start", "vad": "energy", "trailing_silence": 0.5, "max_segment": 8}')
    assert req.endpoint() == {"vad": "energy", "rule1_min_trailing_silence": 0.5, "rule3_max_utterance": 8.0}
    assert parse_start('{"type": "start"}').endpoint() == {}


def test_serve_endpoint_flags_are_checked(tiny_ckpt, capsys):
    for flag, value, message in [("--vad", "webrtc", "--vad: must be one of auto, silero, energy, ctc"),
                                 ("--trailing-silence", "0", "--trailing-silence: must be > 0 seconds"),
                                 ("--max-segment", "-1", "--max-segment: must be > 0 seconds")]:
        assert main(["serve", "--model", str(tiny_ckpt), flag, value]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_serve_flags_set_the_recognizers_endpoint(tiny_ckpt):
    from s2s_media.cli.main import build_parser
    from s2s_media.cli.serve import endpoint_rules, load_recognizer
    args = build_parser().parse_args(["serve", "--model", str(tiny_ckpt), "--vad", "energy",
                                      "--trailing-silence", "0.7", "--max-segment", "9"])
    ep = load_recognizer(args.model, None, "cpu", endpoint=endpoint_rules(args)).config.endpoint
    assert (ep.vad, ep.rule1_min_trailing_silence, ep.rule3_max_utterance) == ("energy", 0.7, 9.0)
