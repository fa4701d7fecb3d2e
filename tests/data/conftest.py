"""Fixtures of the data tests: the tiny corpus's train records and a character tokenizer over them."""
from __future__ import annotations

import pytest

from s2s_media.data.manifest import read_manifest
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def records(tiny_corpus):
    return read_manifest(tiny_corpus / "train.jsonl")


@pytest.fixture(scope="module")
def tokenizer(records):
    return CharTokenizer.train([normalize_text(r.text) for r in records])
