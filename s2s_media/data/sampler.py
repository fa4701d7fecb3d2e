"""Dynamic batches capped by seconds of audio, bucketed by duration, shuffled per epoch.

The sampler is the single source of batch order, so it also carries the resume position:
``state_dict()`` records (epoch, batches already consumed) and ``load_state_dict`` makes the
next iteration skip exactly those batches. Under DDP each rank takes every ``world``-th batch
of the same global order (and all ranks see the same number of batches).
"""
from __future__ import annotations

import random
from typing import Iterator, Sequence


def make_batches(durations: Sequence[float], max_batch_seconds: float, max_batch_size: int,
                 num_buckets: int) -> list[list[int]]:
    """Group indices into batches whose padded length (``len(batch) * longest``) stays under the cap.

    Indices are sorted by duration and cut into ``num_buckets`` buckets of equal count; batches
    never mix buckets, so padding stays small. An utterance longer than the cap forms its own batch.
    """
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    if not order:
        return []
    per_bucket = max(1, -(-len(order) // max(1, num_buckets)))
    batches: list[list[int]] = []
    for start in range(0, len(order), per_bucket):
        batch: list[int] = []
        for i in order[start:start + per_bucket]:
            longest = durations[i]  # sorted ascending, so the newcomer is the longest
            if batch and ((len(batch) + 1) * longest > max_batch_seconds or len(batch) >= max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    return batches


class EpochBatches:
    """Base of the batch samplers: a deterministic order per epoch (``_epoch_order``, from the
    subclass) and an exact resume position: ``state_dict(consumed)`` after ``consumed`` batches of
    the current epoch, ``load_state_dict`` skips them on the next ``__iter__``."""

    epoch: int = 0
    skip: int = 0  # batches of this epoch already consumed (resume)

    def _epoch_order(self) -> list:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[list]:
        order = self._epoch_order()
        start, self.skip = self.skip, 0
        yield from order[start:]

    def state_dict(self, consumed: int) -> dict:
        """Position after ``consumed`` batches of the current epoch."""
        return {"epoch": self.epoch, "consumed": consumed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.skip = state["epoch"], state["consumed"]


class BucketingBatchSampler(EpochBatches):
    """Yields lists of dataset indices. ``set_epoch`` reshuffles deterministically from ``seed``."""

    def __init__(self, durations: Sequence[float], max_batch_seconds: float, max_batch_size: int = 128,
                 num_buckets: int = 20, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.batches = make_batches(durations, max_batch_seconds, max_batch_size, num_buckets)
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def _epoch_order(self) -> list[list[int]]:
        batches = list(self.batches)
        if self.shuffle:
            random.Random(self.seed * 1000003 + self.epoch).shuffle(batches)
        per_rank = len(batches) // self.world_size
        return batches[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        return len(self.batches) // self.world_size

