"""AudioDataset items, Bad items, collate, and augmentation that is reproducible whatever the workers."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from s2s_media.frontend.audio import N_MELS, load_audio, num_frames
from s2s_media.frontend.augment import AugmentConfig
from s2s_media.data.dataset import AudioDataset, Bad, collate, worker_init
from s2s_media.data.sampler import BucketingBatchSampler


def test_item_has_features_tokens_and_normalised_text(records, tokenizer):
    rec = dataclasses.replace(records[0], text="The CAT sat, on the mat!")
    item = AudioDataset([rec], tokenizer)[0]
    wav = load_audio(rec.audio)
    assert item["id"] == rec.id
    assert item["text"] == "the cat sat on the mat"
    assert item["tokens"] == tokenizer.encode("the cat sat on the mat")
    assert tokenizer.decode(item["tokens"]) == "the cat sat on the mat"
    assert item["feats"].shape == (num_frames(len(wav)), N_MELS)
    assert item["feats"].dtype == torch.float32 and torch.isfinite(item["feats"]).all()
    assert item["duration"] == pytest.approx(len(wav) / 16000)


def test_offset_record_reads_its_segment(records, tokenizer):
    rec = dataclasses.replace(records[0], offset=0.5, duration=0.5)
    item = AudioDataset([rec], tokenizer)[0]
    assert item["feats"].shape == (num_frames(8000), N_MELS)


def test_empty_transcript_and_missing_audio_are_bad_items(records, tokenizer, tmp_path):
    missing = tmp_path / "gone.wav"
    recs = [dataclasses.replace(records[0], id="notext", text=" ?! "),
            dataclasses.replace(records[1], id="missing", audio=str(missing)),
            records[2]]
    ds = AudioDataset(recs, tokenizer)
    notext, gone, good = ds[0], ds[1], ds[2]
    assert isinstance(notext, Bad) and notext.id == "notext" and "empty transcript" in notext.reason
    assert isinstance(gone, Bad) and gone.id == "missing"
    assert str(missing) in gone.reason and "not found" in gone.reason
    assert not isinstance(good, Bad)


def test_collate_pads_and_drops_bad(records, tokenizer):
    ds = AudioDataset(records[:3], tokenizer)
    items = [ds[0], Bad("x", "broken"), ds[1], ds[2]]
    batch = collate(items)
    good = [items[0], items[2], items[3]]
    assert batch["ids"] == [x["id"] for x in good]
    assert [b.id for b in batch["bad"]] == ["x"]
    assert batch["tokens"] == [x["tokens"] for x in good]
    assert batch["texts"] == [x["text"] for x in good]
    lengths = [x["feats"].size(0) for x in good]
    assert batch["lengths"].tolist() == lengths
    assert batch["feats"].shape == (3, max(lengths), N_MELS)
    for j, x in enumerate(good):
        torch.testing.assert_close(batch["feats"][j, : lengths[j]], x["feats"])
        assert (batch["feats"][j, lengths[j]:] == 0).all()
    assert batch["seconds"] == pytest.approx(sum(x["duration"] for x in good))


def test_collate_of_only_bad_items_has_no_tensors():
    batch = collate([Bad("a", "r1"), Bad("b", "r2")])
    assert batch["ids"] == [] and len(batch["bad"]) == 2 and "feats" not in batch


def test_augmentation_depends_only_on_seed_epoch_index(records, tokenizer):
    recs = records[:2]
    a, b = AudioDataset(recs, tokenizer, augment=AugmentConfig(), seed=3), \
        AudioDataset(recs, tokenizer, augment=AugmentConfig(), seed=3)
    clean = AudioDataset(recs, tokenizer)[1]["feats"]
    a.set_epoch(1)
    b.set_epoch(1)
    _ = b[0]  # order of access does not matter
    first = a[1]["feats"]
    torch.testing.assert_close(b[1]["feats"], first, rtol=0, atol=0)
    torch.testing.assert_close(a[1]["feats"], first, rtol=0, atol=0)
    assert first.shape != clean.shape or not torch.equal(first, clean)  # augmentation did something
    a.set_epoch(2)
    second = a[1]["feats"]
    assert second.shape != first.shape or not torch.equal(second, first)
    other_seed = AudioDataset(recs, tokenizer, augment=AugmentConfig(), seed=4)
    other_seed.set_epoch(1)
    assert not torch.equal(other_seed[1]["feats"], first) or other_seed[1]["feats"].shape != first.shape


def _batches(ds, sampler, workers: int) -> list[dict]:
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                         worker_init_fn=worker_init if workers else None)
    return list(loader)


def test_dataloader_workers_give_identical_batches(records, tokenizer, tmp_path):
    recs = records[:6] + [dataclasses.replace(records[0], id="missing", audio=str(tmp_path / "gone.wav"))]
    ds = AudioDataset(recs, tokenizer, augment=AugmentConfig(), seed=7)
    ds.set_epoch(1)
    sampler = BucketingBatchSampler([r.duration for r in recs], max_batch_seconds=6.0, num_buckets=2,
                                    shuffle=True, seed=7)
    sampler.set_epoch(1)
    serial = _batches(ds, sampler, 0)
    parallel = _batches(ds, sampler, 2)
    assert len(serial) == len(parallel) == len(sampler) >= 2
    for s, p in zip(serial, parallel):
        assert s["ids"] == p["ids"] and s["tokens"] == p["tokens"]
        assert [b.id for b in s["bad"]] == [b.id for b in p["bad"]]
        if s["ids"]:
            torch.testing.assert_close(s["lengths"], p["lengths"], rtol=0, atol=0)
            torch.testing.assert_close(s["feats"], p["feats"], rtol=0, atol=0)
    assert sorted(i for b in serial for i in b["ids"] + [x.id for x in b["bad"]]) == sorted(r.id for r in recs)
