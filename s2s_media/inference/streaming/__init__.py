"""Streaming speech recognition in the library (no network code): chunked encoder with cached
left context, incremental features, CTC prefix search for partials, endpointing, and attention
rescoring for finals. See :mod:`s2s_media.inference.streaming.recognizer` for the data flow and events;
streaming evaluation is :func:`s2s_media.inference.evaluate.evaluate_streaming`.

>>> rec = StreamingRecognizer(load_model_file("model.pt"), StreamingConfig(chunk_size=16))
>>> stream = rec.create_stream()
>>> stream.accept_waveform(samples, 16000)         # any thread, any piece size
>>> while rec.is_ready(stream):
...     rec.decode_streams([stream])               # a worker batches many streams here
>>> stream.pop_events()                            # partials and finals
"""
from s2s_media.inference.streaming.config import EndpointConfig, StreamingConfig
from s2s_media.inference.streaming.endpoint import Endpointer, endpoint_rule
from s2s_media.inference.events import Event, Final, Partial, Recognizer, RecognizerStream, Word
from s2s_media.inference.streaming.features import StreamingLogMel, StreamResampler
from s2s_media.inference.streaming.recognizer import Stream, StreamingRecognizer

__all__ = [
    "EndpointConfig", "StreamingConfig", "Endpointer", "endpoint_rule", "StreamingLogMel", "StreamResampler",
    "Stream", "StreamingRecognizer", "Event", "Partial", "Final", "Word", "Recognizer", "RecognizerStream",
]
