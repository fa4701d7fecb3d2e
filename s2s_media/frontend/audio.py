"""Audio constants and loading (numpy only; the log-mels are :mod:`s2s_media.frontend.logmel` with torch and
:mod:`s2s_media.frontend.logmel_np` without).

Everything inside the toolkit is 16 kHz mono float32. ``load_audio`` converts whatever it is
given (other rates are resampled, stereo is downmixed) and raises :class:`AudioError` with
the file name for missing, corrupt, empty or truncated files (a WAV whose header declares more
audio than the file holds).
"""
from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from s2s_media.errors import AudioError

SAMPLE_RATE = 16000
N_FFT = 400          # 25 ms window
HOP_LENGTH = 160     # 10 ms hop
N_MELS = 80
# Mel power below this is clamped: about the quantisation noise of 16-bit audio in one mel band.
# Synthetic speech has digital silence (exact zeros); without a floor near the noise level those
# frames sit ~20 nats below speech, a gap that real recordings never show.
LOG_MEL_FLOOR = 1e-7


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float waveform. ``wav: (samples,)``."""
    if orig_sr == target_sr:
        return wav
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """``(samples,)`` or ``(samples, channels)`` -> ``(samples,)`` by averaging channels."""
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def load_audio(path: str | Path, offset: float = 0.0, duration: float | None = None,
               sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr``. Returns ``(samples,)``.

    ``offset``/``duration`` (seconds) read a segment. Formats libsndfile reads (wav, flac, ogg,
    mp3) are read directly; others fall back to librosa/audioread (needs ffmpeg).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found; check the path (relative paths resolve against the manifest)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes); regenerate or remove it")
    _check_wav_length(path)
    try:
        wav, file_sr = _read_segment(str(path), offset, duration)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        wav, file_sr = _load_with_librosa(path, offset, duration, e)
    return _checked(wav, file_sr, sr, str(path), offset or duration)


def decode_audio(data: bytes, where: str, offset: float = 0.0, duration: float | None = None,
                 sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file held in memory (a tar member) as mono float32 at ``sr``: ``(samples,)``.

    ``where`` names the bytes in errors (``shard.tar:key``); ``offset``/``duration`` (seconds) cut
    a segment. Formats libsndfile reads (wav, flac, ogg, mp3) only.
    """
    if not data:
        raise AudioError(f"{where}: audio is empty (0 bytes)")
    try:
        wav, file_sr = _read_segment(io.BytesIO(data), offset, duration)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{where}: cannot decode audio ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                         "; store it as wav or flac") from None
    return _checked(wav, file_sr, sr, where, offset or duration)


def _read_segment(source, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` of ``[offset, offset + duration)`` of a file name or file object (libsndfile)."""
    with sf.SoundFile(source) as f:
        file_sr = f.samplerate
        start = int(round(offset * file_sr))
        if start:
            f.seek(start)
        return f.read(frames=-1 if duration is None else int(round(duration * file_sr)), dtype="float32",
                      always_2d=False), file_sr


def _checked(wav, file_sr: int, sr: int, where: str, segment) -> np.ndarray:
    """Mono, non-empty, finite, at ``sr``; else :class:`AudioError` naming ``where``."""
    wav = to_mono(np.asarray(wav, dtype=np.float32))
    if wav.size == 0:
        raise AudioError(f"{where}: no audio samples{' in the requested segment' if segment else ''}; "
                         "the file is empty or truncated")
    if not np.isfinite(wav).all():
        raise AudioError(f"{where}: audio contains NaN or infinite samples; the file is corrupt")
    return resample(wav, file_sr, sr)


# a writer that cannot seek back leaves these in the data chunk's size: "unknown length", not truncation
UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


def _check_wav_length(path: Path) -> None:
    """A RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds (cut off by a
    crash or a partial copy) is an :class:`AudioError`; libsndfile would silently read what is there."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        fmt = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            kind, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt " and length >= 16:
                fmt = f.read(16)
                f.seek(length - 16 + (length & 1), 1)
            elif kind == b"data":
                break
            else:
                f.seek(length + (length & 1), 1)
        have = size - f.tell()
    if length in UNKNOWN_WAV_SIZES or have >= length:
        return
    if fmt is not None:
        byte_rate = struct.unpack("<HHIIHH", fmt)[3]
        if byte_rate:
            raise AudioError(f"{path}: truncated WAV: the header declares {length / byte_rate:.3f} s of audio but "
                             f"the file holds {have / byte_rate:.3f} s; copy or regenerate it")
    raise AudioError(f"{path}: truncated WAV: the header declares {length} bytes of audio but the file holds "
                     f"{have}; copy or regenerate it")


def _load_with_librosa(path: Path, offset: float, duration: float | None, first_error: Exception):
    try:
        import librosa
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav, file_sr = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=duration)
        if wav.ndim == 2:
            wav = wav.T
        return wav, file_sr
    except Exception as e:  # noqa: BLE001 - any decoder failure becomes one clear line
        reason = str(first_error).splitlines()[0] if str(first_error) else type(e).__name__
        raise AudioError(f"{path}: cannot decode audio ({reason}); convert it to 16 kHz wav or flac") from None


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the header (no decoding where libsndfile knows the format)."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001
        return len(load_audio(path)) / SAMPLE_RATE


def num_frames(num_samples: int) -> int:
    """Number of LogMel frames for a waveform of ``num_samples`` samples."""
    return num_samples // HOP_LENGTH + 1


def __getattr__(name: str):
    """``LogMel`` and ``compute_cmvn`` moved to :mod:`s2s_media.frontend.logmel` (torch); the old names work for
    one release, with a DeprecationWarning."""
    if name in ("LogMel", "compute_cmvn"):
        import importlib
        warnings.warn(f"s2s_media.frontend.audio.{name} has moved to s2s_media.frontend.logmel; the old path will "
                      "be removed in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("s2s_media.frontend.logmel"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
