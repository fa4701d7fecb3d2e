"""FeatureCache: stored log-mels equal the on-the-fly ones, are keyed by the file, and feed training."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from s2s_media.frontend.audio import load_audio
from s2s_media.frontend.logmel import LogMel
from s2s_media.frontend.augment import AugmentConfig
from s2s_media.data.dataset import AudioDataset
from s2s_media.data.feature_cache import FeatureCache, fill_cache
from s2s_media.errors import UserError


def test_cached_features_equal_features_computed_on_the_fly(records, tokenizer, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    plain = AudioDataset(records[:4], tokenizer, augment=None)
    cached = AudioDataset(records[:4], tokenizer, augment=None, feature_cache=cache)
    for i in range(4):
        fresh, first, again = plain[i], cached[i], cached[i]        # the miss computes, the hit reads
        assert cache.has(records[i])
        # stored as float16: equal to the fresh features rounded the same way, and close to them
        torch.testing.assert_close(first["feats"], fresh["feats"].half().float(), rtol=0, atol=0)
        torch.testing.assert_close(again["feats"], first["feats"], rtol=0, atol=0)
        # float16 rounding: within half a unit in the last place (2**-11 relative)
        assert ((first["feats"] - fresh["feats"]).abs() <= fresh["feats"].abs() * 2.0 ** -11).all()
        assert first["tokens"] == fresh["tokens"] and first["duration"] == pytest.approx(records[i].duration)


def test_segments_have_their_own_entries(records, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    seg = dataclasses.replace(records[0], offset=0.25, duration=0.5)
    whole, part = cache.get(records[0]), cache.get(seg)
    assert cache.path(seg) != cache.path(records[0])
    expected = LogMel()(torch.from_numpy(load_audio(seg.audio, offset=0.25, duration=0.5)).unsqueeze(0))[0]
    torch.testing.assert_close(part, expected.half().float(), rtol=0, atol=0)
    assert whole.size(0) > part.size(0)


def test_a_changed_file_is_computed_again(records, tmp_path):
    wav_path = tmp_path / "u.wav"
    sf.write(wav_path, load_audio(records[0].audio), 16000)
    rec = dataclasses.replace(records[0], audio=str(wav_path))
    cache = FeatureCache(tmp_path / "feats")
    before = cache.get(rec)
    sf.write(wav_path, np.zeros(16000, dtype=np.float32), 16000)      # replaced by a second of silence
    os.utime(wav_path, ns=(0, 10**18))
    after = cache.get(rec)
    assert after.shape != before.shape and after.size(0) == 101


def test_a_corrupt_entry_is_replaced(records, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    good = cache.get(records[1])
    cache.path(records[1]).write_bytes(b"not a numpy file")          # e.g. a disk that filled up
    torch.testing.assert_close(cache.get(records[1]), good, rtol=0, atol=0)


def test_waveform_augmentation_is_refused_with_a_cache(records, tokenizer, tmp_path):
    with pytest.raises(UserError, match="feature_cache.*speed"):
        AudioDataset(records, tokenizer, augment=AugmentConfig(), feature_cache=FeatureCache(tmp_path))
    spec_only = AugmentConfig.disabled()
    spec_only.spec_augment.enabled = True
    AudioDataset(records, tokenizer, augment=spec_only, feature_cache=FeatureCache(tmp_path))


def test_missing_audio_is_a_bad_item_not_a_crash(records, tokenizer, tmp_path):
    gone = dataclasses.replace(records[0], audio=str(tmp_path / "gone.flac"))
    item = AudioDataset([gone], tokenizer, feature_cache=FeatureCache(tmp_path / "feats"))[0]
    assert "not found" in item.reason


def test_fill_cache_resumes_and_reports_failures(records, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    cache.get(records[0])
    bad = dataclasses.replace(records[1], id="bad", audio=str(tmp_path / "missing.wav"))
    results = dict(fill_cache(cache, [records[0], bad, *records[2:5]], workers=2))
    assert records[0].id not in results                                  # already there: skipped
    assert results.pop("bad").endswith("not found (utterance bad)")
    assert set(results) == {r.id for r in records[2:5]} and all(e is None for e in results.values())
    assert all(cache.has(r) for r in records[2:5])


def test_features_cli_fills_the_cache_and_exits_1_on_a_failure(tiny_corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = (tiny_corpus / "train.jsonl").read_text().splitlines()[:3]
    lines = [line.replace('"audio": "wav/', f'"audio": "{tiny_corpus}/wav/') for line in lines]
    manifest.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "s2s_media.cli.main", "features", str(manifest), "--cache", str(tmp_path / "c"),
           "--workers", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "features for 3 of 3 utterances" in done.stdout
    manifest.write_text(manifest.read_text() + lines[0].replace("wav/u00.wav", "wav/none.wav")
                        .replace('"id": "u00"', '"id": "lost"') + "\n")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "warning: lost:" in done.stdout and "1 failed" in done.stdout
