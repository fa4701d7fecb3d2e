"""Bucketing batch sampler: caps, coverage, shuffling, exact resume and DDP splits."""
import random

import pytest

from s2s_media.data.sampler import BucketingBatchSampler, make_batches


def durations(n: int = 300, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(0.5, 12.0), 2) for _ in range(n)]


@pytest.mark.parametrize("cap, size, buckets", [(40.0, 128, 10), (60.0, 8, 5), (15.0, 4, 1), (1000.0, 16, 20)])
def test_batches_respect_seconds_and_size_caps(cap, size, buckets):
    durs = durations()
    batches = make_batches(durs, cap, size, buckets)
    for batch in batches:
        assert 1 <= len(batch) <= size
        padded = len(batch) * max(durs[i] for i in batch)
        assert padded <= cap or len(batch) == 1
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(durs)))


def test_batches_are_greedy_within_a_bucket():
    durs = [1.0] * 10
    assert make_batches(durs, 3.0, 100, 1) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert make_batches(durs, 100.0, 4, 1) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_overlong_utterance_gets_its_own_batch():
    durs = [1.0, 30.0, 1.0, 2.0]
    batches = make_batches(durs, 10.0, 8, 1)
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]


def test_buckets_keep_similar_durations_together():
    durs = durations(200)
    batches = make_batches(durs, 1e9, 1000, 4)         # no cap: one batch per bucket
    assert len(batches) == 4
    spans = [(min(durs[i] for i in b), max(durs[i] for i in b)) for b in batches]
    assert all(hi_prev <= lo for (_, hi_prev), (lo, _) in zip(spans, spans[1:]))


def test_every_index_exactly_once_per_epoch():
    durs = durations()
    sampler = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(durs)))


def test_shuffle_differs_across_epochs_and_is_deterministic():
    durs = durations()

    def order(seed, epoch, shuffle=True):
        s = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=seed, shuffle=shuffle)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0) == order(0, 0)                   # same seed and epoch: same order
    assert order(0, 0) != order(0, 1)                   # a new epoch reshuffles
    assert order(0, 1) != order(1, 1)                   # the seed matters
    assert order(0, 0, shuffle=False) == order(0, 5, shuffle=False) == make_batches(durs, 40.0, 16, 6)


@pytest.mark.parametrize("consumed", [0, 1, 7])
def test_resume_yields_exactly_the_remaining_batches(consumed):
    durs = durations()
    first = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=5)
    first.set_epoch(4)
    full = list(first)
    state = first.state_dict(consumed=consumed)
    assert state == {"epoch": 4, "consumed": consumed}

    resumed = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)                                # the trainer re-announces the same epoch
    assert list(resumed) == full[consumed:]
    assert list(resumed) == full                        # the skip applies to one pass only
    resumed.set_epoch(5)
    assert sorted(i for b in resumed for i in b) == list(range(len(durs)))


def test_resume_state_is_dropped_when_the_epoch_moves_on():
    durs = durations()
    sampler = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=5)
    sampler.load_state_dict({"epoch": 2, "consumed": 5})
    sampler.set_epoch(3)
    assert len(list(sampler)) == len(sampler)


def test_ddp_ranks_get_disjoint_batches_of_equal_count():
    durs = durations(301)
    single = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=9)
    ranks = [BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=9, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        r0, r1 = list(ranks[0]), list(ranks[1])
        assert len(r0) == len(r1) == len(ranks[0]) == len(single) // 2
        seen0 = {i for b in r0 for i in b}
        seen1 = {i for b in r1 for i in b}
        assert not seen0 & seen1
        # an odd number of batches: the last one is dropped so that both ranks step in lockstep
        assert len(single) % 2 == 1 and 2 * len(r0) == len(single) - 1
        assert sorted(map(tuple, r0 + r1)) == sorted(map(tuple, list(single)[: 2 * len(r0)]))


def test_ddp_resume_per_rank():
    durs = durations()
    rank1 = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=2, rank=1, world_size=2)
    full = list(rank1)
    again = BucketingBatchSampler(durs, 40.0, 16, num_buckets=6, seed=2, rank=1, world_size=2)
    again.load_state_dict(rank1.state_dict(consumed=3))
    assert list(again) == full[3:]
