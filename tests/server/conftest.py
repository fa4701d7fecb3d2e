"""Server fixtures: a tiny random streaming model, espeak-ng speech, and a real server on a free port.

The model is untrained (random weights): its text is noise, but it exercises every code path
at full speed. Its CTC head emits a token on most frames, so partials change every chunk; to
get endpoints (finals in the middle of a stream) the recognizer uses a 1 s maximum segment
(endpoint rule 3).
"""
from __future__ import annotations

import sys
from pathlib import Path

# ``tests/`` is on sys.path (pytest's pythonpath), where this folder would pass for a namespace
# package ``server``; the repository root first makes ``import server`` find the real one even
# when pytest runs as ``pytest`` rather than ``python -m pytest`` (which adds the root itself).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pytest
import soundfile as sf

from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from server_fixtures import RunningServer, make_tiny_checkpoint, start_server, tiny_recognizer


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("server_model") / "tiny.pt")


@pytest.fixture(scope="session")
def recognizer(tiny_ckpt):
    return tiny_recognizer(tiny_ckpt)


@pytest.fixture(scope="session")
def speech(tiny_corpus) -> np.ndarray:
    """About 3 s of espeak-ng speech at 16 kHz: two utterances with a short pause."""
    a, b = (load_audio(tiny_corpus / f"wav/u0{i}.wav") for i in (0, 1))
    return np.concatenate([a, np.zeros(SAMPLE_RATE // 4, np.float32), b]).astype(np.float32)


@pytest.fixture(scope="session")
def speech_wav(speech, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("server_audio") / "speech.wav"
    sf.write(path, speech, SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def punctuator():
    """The bundled punctuation model (what ``serve`` writes finals with by default)."""
    from s2s_media.inference.punctuation import Punctuator
    return Punctuator.load_cached(None)


@pytest.fixture
def serve(recognizer):
    """``serve(recognizer=None, engine=None, punctuator=None, **ServerConfig fields)`` -> a started
    :class:`RunningServer`."""
    servers: list[RunningServer] = []

    def start(rec=None, engine: dict | None = None, punctuator=None, **fields) -> RunningServer:
        servers.append(start_server(rec or recognizer, engine, punctuator, **fields))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(autouse=True)
def _one_torch_thread(one_thread):
    """The tiny model decodes fastest on one thread, which leaves a core to the event loop."""
    yield
