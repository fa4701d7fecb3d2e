"""Log-mel features computed once and kept on disk.

Without a cache, every epoch reads each utterance's FLAC, resamples it and runs its STFT again:
on a 2-core CPU that is a sizeable share of a core taken from training. With
``data.feature_cache: DIR`` the features of an utterance are computed the first time it is
needed (or ahead of training by ``s2s-media features``) and stored as float16 ``.npy`` files;
later epochs read them back, and only SpecAugment runs on the fly. Waveform augmentation
(speed, noise, reverb) cannot run on stored features: bake it into the corpus instead (the
synthetic corpus generator draws voices, speakers and channels per utterance).

An entry is keyed by the audio file's absolute path, size and modification time, the segment
(offset, duration) and the feature settings, so an edited or replaced file is computed again,
never served stale. Writes are atomic (a temporary file renamed into place), so a killed run
leaves no half-written entry, and concurrent DataLoader workers may fill the same cache.

Stored values are the float32 features rounded to float16: a cached feature equals
``LogMel(wav).half().float()`` exactly, within 2**-11 (relative) of the float32 value.
"""
from __future__ import annotations

import hashlib
import os
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from s2s_media.frontend.logmel import LogMel
from s2s_media.data.manifest import AudioRecord
from s2s_media.errors import UserError

FEATURE_VERSION = 1   # bump when LogMel's output changes, so old entries are never reused


class FeatureCache:
    """``get(record) -> feats (frames, n_mels) float32``, computed and stored on a miss.

    ``root`` is created on first use; it may be shared by several manifests and experiments.
    """

    def __init__(self, root: str | Path, n_mels: int = 80):
        self.root = Path(root)
        self.n_mels = n_mels
        self._logmel: LogMel | None = None

    def path(self, record: AudioRecord) -> Path:
        """Where ``record``'s features live (raises :class:`UserError` if its audio is missing)."""
        audio = Path(record.audio).resolve()
        try:
            st = audio.stat()
        except OSError:
            raise UserError(f"{record.audio}: audio file not found (utterance {record.id})") from None
        key = "|".join(map(str, (audio, st.st_size, st.st_mtime_ns, record.offset, record.duration if
                                 record.offset is not None else None, self.n_mels, FEATURE_VERSION)))
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def compute(self, wav: np.ndarray) -> torch.Tensor:
        """Features of a waveform ``(samples,)`` as the cache stores them: ``(frames, n_mels)`` float32."""
        if self._logmel is None:
            self._logmel = LogMel(self.n_mels)
        with torch.no_grad():
            feats = self._logmel(torch.from_numpy(np.ascontiguousarray(wav)).unsqueeze(0))[0]
        return feats.half().float()

    def get(self, record: AudioRecord, wav: np.ndarray | None = None) -> torch.Tensor:
        """``record``'s features; ``wav`` (its samples, if already loaded) saves a read on a miss."""
        path = self.path(record)
        try:
            return torch.from_numpy(np.load(path).astype(np.float32))
        except (OSError, ValueError, EOFError):
            pass                                            # missing (or unreadable): compute it again
        feats = self.compute(record.load() if wav is None else wav)
        self._store(path, feats)
        return feats

    def has(self, record: AudioRecord) -> bool:
        """True if ``record``'s features are stored (False also when its audio is missing)."""
        try:
            return self.path(record).is_file()
        except UserError:
            return False

    def _store(self, path: Path, feats: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, feats.numpy().astype(np.float16))
        os.replace(tmp, path)


def _fill_one(job: tuple[str, int, AudioRecord]) -> tuple[str, str | None]:
    root, n_mels, record = job
    try:
        FeatureCache(root, n_mels).get(record)
        return record.id, None
    except UserError as e:
        return record.id, str(e)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
        return record.id, f"{type(e).__name__}: {e}"


def fill_cache(cache: FeatureCache, records: Iterable[AudioRecord], workers: int = 1) -> Iterator[tuple[str, str | None]]:
    """Compute the missing entries of ``records`` in ``workers`` processes, with a progress bar.

    Yields ``(id, error or None)`` per record, in completion order; entries already present are
    skipped (so an interrupted fill resumes where it stopped).
    """
    todo = [r for r in records if not cache.has(r)]
    jobs = [(str(cache.root), cache.n_mels, r) for r in todo]
    torch.set_num_threads(1)
    with tqdm(total=len(jobs), desc="features", unit="utt", disable=None, dynamic_ncols=True) as bar:
        if workers <= 1:
            results = map(_fill_one, jobs)
            for result in results:
                bar.update(1)
                yield result
            return
        with Pool(workers) as pool:
            for result in pool.imap_unordered(_fill_one, jobs, chunksize=16):
                bar.update(1)
                yield result
