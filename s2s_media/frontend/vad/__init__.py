"""Voice activity detection: which stretches of a recording are speech.

One interface (:class:`Vad`: a speech score per 10 ms frame, and which scores mean speech), two
detectors:

* ``silero`` (:mod:`.silero`): the learned Silero VAD whose ONNX model ships in the ``silero-vad``
  package, run with ONNX Runtime. The default (``auto``) when installed.
* ``energy`` (:mod:`.energy`): frame energy against the recording's own noise floor; NumPy only.

Uses: :func:`segment` cuts long recordings for ``transcribe`` (:mod:`.segment`), and
:class:`StreamVad` decides speech frame by frame for the server's endpointing (:mod:`.stream`).
Measured on noisy and reverberant long-form audio in docs/benchmarks.md ("Voice activity detection").
"""
from s2s_media.frontend.vad.base import FRAME_S, VAD_METHODS, Scorer, Segment, Vad, VadConfig, num_frames
from s2s_media.frontend.vad.energy import EnergyVad, frame_energy_db, speech_mask
from s2s_media.frontend.vad.registry import VADS, make_vad, resolve
from s2s_media.frontend.vad.segment import segment
from s2s_media.frontend.vad.silero import SileroVad
from s2s_media.frontend.vad.stream import StreamVad

__all__ = ["FRAME_S", "VAD_METHODS", "VADS", "EnergyVad", "Scorer", "Segment", "SileroVad", "StreamVad", "Vad",
           "VadConfig", "frame_energy_db", "make_vad", "num_frames", "resolve", "segment", "speech_mask"]
