"""The shard-stream sampler: disjoint shards per stream, every utterance once, equal batch counts,
caps and buckets, exact resume with a checked fingerprint."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from s2s_media.data.stream_sampler import StreamBatchSampler
from s2s_media.errors import UserError


def items(shards: int = 8, per_shard: tuple[int, int] = (20, 40), bad: int = 0, seed: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for s in range(shards):
        for k in range(rng.randint(*per_shard)):
            out.append(SimpleNamespace(shard=f"s{s:02d}.tar", duration=round(rng.uniform(0.5, 8.0), 2), problem=None))
    for i in rng.sample(range(len(out)), bad):
        out[i].problem = f"{out[i].shard}: key k{i}: broken"
    return out


def samplers(data, world: int, workers: int, **kw) -> list[StreamBatchSampler]:
    return [StreamBatchSampler(data, 30.0, 16, num_buckets=5, buffer_size=kw.pop("buffer", 10), seed=kw.pop("seed", 1),
                               rank=r, world_size=world, num_workers=workers, **kw) for r in range(world)]


@pytest.mark.parametrize("world, workers", [(1, 0), (1, 2), (2, 2), (3, 1)])
def test_every_item_once_and_each_worker_reads_its_own_shards(world, workers):
    data = items(bad=5)
    ranks = samplers(data, world, workers)
    for epoch in range(2):
        seen, shard_owner = [], {}
        for r, sampler in enumerate(ranks):
            sampler.set_epoch(epoch)
            order = list(sampler)
            assert len(order) == len(sampler) == len(ranks[0])        # DDP ranks take equal steps
            w = max(1, workers)
            for j, batch in enumerate(order):                        # DataLoader: batch j -> worker j % w
                for i in batch:
                    assert shard_owner.setdefault(data[i].shard, (r, j % w)) == (r, j % w)
                seen += batch
        assert sorted(seen) == list(range(len(data)))


def test_batches_keep_caps_and_buckets():
    data = items()
    sampler = samplers(data, 1, 0)[0]
    for batch in sampler:
        durs = [data[i].duration for i in batch]
        assert len(batch) <= 16 and (len(batch) * max(durs) <= 30.0 or len(batch) == 1)
        bucket = {sum(d >= b for b in sampler.bounds) for d in durs}
        assert len(bucket) == 1


def test_order_is_deterministic_and_changes_with_the_epoch():
    data = items()
    a, b = samplers(data, 1, 2)[0], samplers(data, 1, 2)[0]
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_the_shuffle_buffer_mixes_shards():
    data = items(per_shard=(30, 30))
    mixed = samplers(data, 1, 0, buffer=100)[0]
    plain = samplers(data, 1, 0, buffer=1)[0]
    shards_per_batch = lambda s: sum(len({data[i].shard for i in b}) for b in s) / len(s)   # noqa: E731
    assert shards_per_batch(mixed) > shards_per_batch(plain)


def test_resume_skips_exactly_what_was_consumed_and_records_positions():
    data = items()
    sampler = samplers(data, 2, 2)[1]
    sampler.set_epoch(1)
    full = list(sampler)
    state = sampler.state_dict(5)
    assert state["epoch"] == 1 and state["consumed"] == 5 and len(state["positions"]) == 4
    shard, read = state["positions"][2]                # rank 1, worker 0: its 3 batches of the 5
    assert shard.endswith(".tar") and read > 0
    again = samplers(data, 2, 2)[1]
    again.load_state_dict(state)
    again.set_epoch(1)
    assert list(again) == full[5:]


def test_resume_refuses_other_shards_or_other_stream_counts():
    state = samplers(items(), 1, 2)[0].state_dict(3)
    with pytest.raises(UserError, match="written with 2 shard streams.*this run has 4"):
        samplers(items(), 2, 2)[0].load_state_dict(state)
    with pytest.raises(UserError, match="the shards changed"):
        samplers(items(seed=5), 1, 2)[0].load_state_dict(state)


def test_too_few_shards_for_the_streams_is_a_clear_error():
    with pytest.raises(UserError, match="3 shard.*for 4 streams.*lower data.num_workers"):
        samplers(items(shards=3), 2, 2)
