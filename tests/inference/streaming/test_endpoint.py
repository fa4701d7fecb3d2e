"""Endpoint rules on synthetic blank posteriors and on a VAD over real speech, and the streaming config."""
import numpy as np
import pytest

from s2s_media.frontend.audio import load_audio

from s2s_media.errors import ConfigError, UserError
from s2s_media.inference.streaming import EndpointConfig, Endpointer, StreamingConfig, endpoint_rule

SHIFT = 0.04
SPEECH, SIL = 0.1, 0.99      # blank probabilities of a speech frame and a silent frame


def feed(ep: Endpointer, probs: list[float], decoded: bool, chunk: int = 16) -> list[tuple[int, str]]:
    """Feed ``probs`` in chunks, checking after each as the recognizer does; (frames, rule) when one fires."""
    fired = []
    for i in range(0, len(probs), chunk):
        ep.update(probs[i:i + chunk], i * SHIFT)
        rule = ep.detect(decoded)
        if rule:
            fired.append((ep.frames, rule))
            ep.reset()
    return fired


def test_rule1_trailing_silence_after_text():
    ep = Endpointer(EndpointConfig(vad="ctc"), SHIFT)
    probs = [SPEECH] * 20 + [SIL] * 30                 # 1.2 s of silence = 30 frames
    assert feed(ep, probs, decoded=True, chunk=1) == [(50, "rule1")]
    ep.reset()
    assert feed(ep, [SPEECH] * 20 + [SIL] * 29, decoded=True, chunk=1) == []


def test_rule1_needs_decoded_text_and_rule2_then_fires_at_5s():
    ep = Endpointer(EndpointConfig(vad="ctc"), SHIFT)
    assert feed(ep, [SIL] * 124, decoded=False, chunk=1) == []
    assert feed(ep, [SIL], decoded=False, chunk=1) == [(125, "rule2")]     # 125 x 40 ms = 5 s


def test_rule3_caps_the_segment_length():
    ep = Endpointer(EndpointConfig(vad="ctc"), SHIFT)
    assert feed(ep, [SPEECH] * 500, decoded=True, chunk=1) == [(500, "rule3")]   # 20 s
    ep.reset()
    assert feed(ep, [SPEECH, SIL] * 260, decoded=True, chunk=16) == [(512, "rule3")]  # checked per chunk


def test_a_speech_frame_restarts_the_silence_and_the_threshold_decides():
    ep = Endpointer(EndpointConfig(vad="ctc"), SHIFT)
    assert feed(ep, [SIL] * 29 + [SPEECH] + [SIL] * 29, decoded=True, chunk=1) == []
    assert ep.trailing_silence_frames == 29
    ep = Endpointer(EndpointConfig(vad="ctc", blank_threshold=0.995), SHIFT)      # 0.99 is not silent enough now
    assert feed(ep, [SIL] * 200, decoded=True) == []
    assert ep.trailing_silence_frames == 0


def test_disabled_endpointing_never_fires():
    assert endpoint_rule(EndpointConfig(vad="ctc", enabled=False), 100.0, 100.0, True) is None
    assert endpoint_rule(EndpointConfig(vad="ctc"), 0.5, 0.0, True) is None


def test_config_from_yaml_dict_and_bad_values_name_the_field():
    cfg = StreamingConfig.from_dict({"chunk_size": 8, "num_left_chunks": 4,
                                     "endpoint": {"rule1_min_trailing_silence": 0.8}})
    assert (cfg.chunk_size, cfg.endpoint.rule1_min_trailing_silence, cfg.max_cache_frames) == (8, 0.8, 32)
    assert StreamingConfig().max_cache_frames == 8 * 64
    for data, field in [({"chunk_size": 0}, "streaming.chunk_size"), ({"beam": 0}, "streaming.beam"),
                        ({"num_left_chunks": -2}, "streaming.num_left_chunks"),
                        ({"endpoint": {"blank_threshold": 1.5}}, "streaming.endpoint.blank_threshold"),
                        ({"endpoint": {"rule3_max_utterance": 0}}, "streaming.endpoint.rule3_max_utterance"),
                        ({"endpoint": {"vad": "webrtc"}}, "streaming.endpoint.vad"),
                        ({"chunk": 4}, "streaming.chunk"), ({"chunk_size": "x"}, "streaming.chunk_size")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
            StreamingConfig.from_dict(data)
        assert isinstance(e.value, UserError) and "\n" not in str(e.value)



@pytest.mark.parametrize("vad", ["silero", "energy"])
def test_a_vad_ends_the_segment_after_the_speech_whatever_the_blanks_say(tiny_corpus, vad):
    speech = load_audio(tiny_corpus / "wav/u00.wav")
    wav = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(2 * 16000, np.float32)])
    ep = Endpointer(EndpointConfig(vad=vad), SHIFT)
    fired, frames = None, 0
    for i in range(0, wav.size, 1280):          # 80 ms pieces, two encoder frames each
        piece = wav[i:i + 1280]
        ep.accept_audio(piece)
        n = piece.size // 640
        ep.update([SPEECH] * n, frames * SHIFT)  # the blanks say speech throughout: only the VAD can end it
        frames += n
        if fired is None and ep.detect(decoded=True):
            fired = frames * SHIFT
    end = (8000 + speech.size) / 16000
    # espeak ends its files with a little silence: the speech itself ends up to ~0.3 s before the file
    assert fired is not None and end + 1.2 - 0.4 <= fired <= end + 1.2 + 0.4, (fired, end)
