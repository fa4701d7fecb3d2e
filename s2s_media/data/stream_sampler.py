"""Batches streamed from shards: disjoint shards per DDP rank and DataLoader worker, a shuffle
buffer and duration bucketing on each stream, and an exact resume position.

Every rank and worker is one *stream* (``rank * workers + worker``). Each epoch the shards are
shuffled (from ``seed`` and the epoch) and dealt to the streams, each shard to the stream holding
the fewest seconds so far, so no shard is read by two streams. A stream reads its shards in turn:
every utterance passes a shuffle buffer of ``buffer_size`` items (a random one leaves as each new
one arrives) and then the open batch of its duration bucket; a batch is emitted when the next
utterance would break the seconds or size cap. The bucket bounds are duration quantiles of the
whole corpus, the same on every rank.

The plan is computed from the shard index alone (:mod:`s2s_media.data.shards`: durations known
before any audio is decoded), so it is deterministic. That gives three guarantees:

- the streams get equal batch counts (a short stream halves its largest batches until it has as
  many as the longest), so DDP ranks take the same number of steps and every DataLoader worker
  gets every ``workers``-th batch of its rank: worker ``w`` reads only the shards of one stream,
  because the DataLoader hands batch ``j`` to worker ``j % workers``;
- every utterance of the corpus is in exactly one batch of the epoch, on one rank;
- resume is exact: the state is the :class:`~s2s_media.data.sampler.EpochBatches` contract (epoch,
  batches consumed) plus each stream's position (shard and item) and a fingerprint of the shards,
  checked on load. Skipping the consumed batches reads no audio.

A broken index entry (see :class:`~s2s_media.data.shards.ShardItem`) rides along with the next
batch of its stream, where loading it fails: the trainer then warns with its shard and key and counts it.
"""
from __future__ import annotations

import bisect
import logging
import random
import zlib
from typing import Sequence

from s2s_media.data.sampler import EpochBatches
from s2s_media.errors import UserError

log = logging.getLogger("s2s_media.data.stream")


class StreamBatchSampler(EpochBatches):
    """Yields this rank's batches (lists of indices into ``items``), the rank's streams interleaved.

    ``items``: objects with ``shard`` (a name), ``duration`` (seconds) and ``problem`` (None when
    usable), listed shard by shard in reading order.
    """

    def __init__(self, items: Sequence, max_batch_seconds: float, max_batch_size: int = 128, num_buckets: int = 20,
                 buffer_size: int = 1000, seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int = 0):
        self.items = items
        self.cap, self.size, self.buffer_size = max_batch_seconds, max_batch_size, max(1, buffer_size)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.workers = max(1, num_workers)
        self.n_streams = world_size * self.workers
        self.epoch, self.skip = 0, 0
        self.shards: list[str] = []
        self.members: list[list[int]] = []
        where: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.shard not in where:
                where[item.shard] = len(self.shards)
                self.shards.append(item.shard)
                self.members.append([])
            self.members[where[item.shard]].append(i)
        if len(self.shards) < self.n_streams:
            raise UserError(f"{len(self.shards)} shard(s) for {self.n_streams} streams ({world_size} process(es) x "
                            f"{self.workers} DataLoader worker(s)); each stream needs its own shards: write more, "
                            "smaller shards (s2s-media shard --shard-seconds) or lower data.num_workers")
        self.seconds = [sum(items[i].duration for i in m if items[i].problem is None) for m in self.members]
        good = sorted(it.duration for it in items if it.problem is None)
        self.bounds = sorted({good[len(good) * k // num_buckets] for k in range(1, num_buckets)}) if good else []
        self._plan: tuple[int, list[list[list[int]]], list[list[tuple[int, int]]]] | None = None

    # ------------------------------------------------------------------ the plan
    def assign(self, epoch: int) -> list[list[int]]:
        """Shard indices per stream: shuffled, then each to the stream with the fewest seconds."""
        order = list(range(len(self.shards)))
        random.Random(self.seed * 1000003 + epoch).shuffle(order)
        loads, owned = [0.0] * self.n_streams, [[] for _ in range(self.n_streams)]
        for shard in order:
            s = min(range(self.n_streams), key=lambda k: (loads[k], k))
            owned[s].append(shard)
            loads[s] += self.seconds[shard]
        return owned

    def _stream(self, shards: list[int], rng: random.Random) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """One stream's batches, and for each the (shard, item) read position when it was emitted."""
        batches: list[list[int]] = []
        marks: list[tuple[int, int]] = []
        open_: dict[int, list[int]] = {}
        longest: dict[int, float] = {}
        bad: list[int] = []
        buffer: list[int] = []
        position = (shards[0], 0) if shards else (0, 0)

        def add(i: int) -> None:
            d = self.items[i].duration
            b = bisect.bisect_right(self.bounds, d)
            cur = open_.setdefault(b, [])
            if cur and ((len(cur) + 1) * max(longest[b], d) > self.cap or len(cur) >= self.size):
                emit(cur)
                open_[b] = cur = []
            longest[b] = max(longest[b], d) if cur else d
            cur.append(i)

        def emit(batch: list[int]) -> None:
            batches.append(bad + batch)
            marks.append(position)
            bad.clear()

        for shard in shards:
            for n, i in enumerate(self.members[shard]):
                position = (shard, n + 1)
                if self.items[i].problem is not None:
                    bad.append(i)
                elif len(buffer) < self.buffer_size:
                    buffer.append(i)
                else:
                    j = rng.randrange(self.buffer_size)
                    buffer[j], i = i, buffer[j]
                    add(i)
        rng.shuffle(buffer)
        for i in buffer:
            add(i)
        for b in sorted(open_):
            if open_[b]:
                emit(open_[b])
        if bad and batches:
            batches[-1] = bad + batches[-1]
            bad.clear()
        return batches, marks

    def _split_to(self, batches: list[list[int]], marks: list, target: int, stream: int) -> None:
        """Halve the largest batches (by usable items) until there are ``target``."""
        sizes = [sum(self.items[i].problem is None for i in b) for b in batches]
        while len(batches) < target:
            j = max(range(len(batches)), key=lambda k: (sizes[k], -k), default=None)
            if j is None or sizes[j] < 2:
                raise UserError(f"the shards are too uneven to give every stream {target} batches: stream {stream} "
                                f"({self.world_size} process(es) x {self.workers} worker(s)) holds too few "
                                "utterances; write shards of equal length (s2s-media shard) or lower data.num_workers")
            good = [i for i in batches[j] if self.items[i].problem is None]
            rest = [i for i in batches[j] if self.items[i].problem is not None]
            half = len(good) // 2
            batches[j:j + 1] = [rest + good[:half], good[half:]]
            marks[j:j + 1] = [marks[j], marks[j]]
            sizes[j:j + 1] = [half, len(good) - half]

    def plan(self, epoch: int) -> tuple[list[list[list[int]]], list[list[tuple[int, int]]]]:
        """Every stream's batches for ``epoch`` (equal counts), with their read positions."""
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1], self._plan[2]
        batches, marks = [], []
        for s, shards in enumerate(self.assign(epoch)):
            b, m = self._stream(shards, random.Random(f"{self.seed}/{epoch}/{s}"))
            batches.append(b)
            marks.append(m)
        target = max(len(b) for b in batches)
        for s in range(self.n_streams):
            self._split_to(batches[s], marks[s], target, s)
        self._plan = (epoch, batches, marks)
        return batches, marks

    def _epoch_order(self) -> list[list[int]]:
        batches, _ = self.plan(self.epoch)
        mine = batches[self.rank * self.workers:(self.rank + 1) * self.workers]
        return [stream[k] for k in range(len(mine[0])) for stream in mine]

    def __len__(self) -> int:
        return len(self.plan(self.epoch)[0][0]) * self.workers

    # ------------------------------------------------------------------ resume
    def fingerprint(self) -> dict:
        """What the plan depends on besides seed and epoch: the shards (names, item counts) and streams."""
        names = "\n".join(f"{s.rsplit('/', 1)[-1]}:{len(m)}" for s, m in zip(self.shards, self.members))
        return {"shards": len(self.shards), "items": len(self.items), "streams": self.n_streams,
                "crc32": zlib.crc32(names.encode("utf-8"))}

    def positions(self, consumed: int) -> list[list]:
        """Each stream's ``[shard name, items read]`` after ``consumed`` batches of every rank."""
        batches, marks = self.plan(self.epoch)
        out = []
        for s in range(self.n_streams):
            done = (consumed + self.workers - 1 - s % self.workers) // self.workers
            shard, n = marks[s][done - 1] if done else (self.assign(self.epoch)[s][0], 0)
            out.append([self.shards[shard], n])
        return out

    def state_dict(self, consumed: int) -> dict:
        return {**super().state_dict(consumed), "fingerprint": self.fingerprint(), "positions": self.positions(consumed)}

    def load_state_dict(self, state: dict) -> None:
        saved, mine = state.get("fingerprint"), self.fingerprint()
        if saved is not None and saved != mine:
            if saved["streams"] != mine["streams"]:
                raise UserError(f"the resume state was written with {saved['streams']} shard streams (processes x "
                                f"data.num_workers) but this run has {mine['streams']}; resume with the same "
                                "number of processes and data.num_workers")
            raise UserError(f"the shards changed since the resume state was written ({saved['shards']} shards, "
                            f"{saved['items']} items then; {mine['shards']}, {mine['items']} now); resume needs the "
                            "same shards, or start a new train.exp_dir")
        super().load_state_dict(state)
        for s, (shard, n) in enumerate(state.get("positions", [])):
            if s // self.workers == self.rank:
                log.info("stream %d resumes in epoch %d after item %d of %s", s, self.epoch, n, shard)
