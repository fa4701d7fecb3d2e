"""Training data from any source kind of ``data.train``: a JSONL manifest, WebDataset tar shards,
or a Lhotse Shar directory (:class:`~s2s_media.config.DataSource`).

A JSONL manifest gives :class:`~s2s_media.data.manifest.AudioRecord` s; shards and Shar give
:class:`~s2s_media.data.shards.ShardItem` s, indexed from the tars without decoding audio. Both
have ``id``, ``text``, ``duration`` and ``load()``, so the dataset, the tokenizer and the CMVN
statistics treat them alike; the task picks the stream sampler for shard items.
"""
from __future__ import annotations

from s2s_media.config import DataSource
from s2s_media.data.lhotse_io import scan_shar
from s2s_media.data.manifest import AudioRecord, read_manifest
from s2s_media.data.shards import ShardItem, expand_shards, scan_shards


def describe(source: str | DataSource) -> str:
    """The source as the user wrote it, for messages."""
    if isinstance(source, str):
        return source
    kind = source.kind()
    return f"{kind}: {getattr(source, kind)}"


def read_source(source: str | DataSource) -> list[AudioRecord | ShardItem]:
    """The utterances of a training source (broken shard entries included, marked by ``problem``)."""
    if isinstance(source, str):
        return read_manifest(source)
    kind = source.kind()
    if kind == "jsonl":
        return read_manifest(source.jsonl)
    if kind == "shards":
        return scan_shards(expand_shards(source.shards))
    return scan_shar(source.shar)


def usable(records: list) -> list:
    """The records that can be loaded (broken shard entries left out)."""
    return [r for r in records if r.problem is None]
