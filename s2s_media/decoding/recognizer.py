"""Deprecated path: moved to s2s_media.decoding.search (kept for one release)."""
from s2s_media._deprecated import moved

__getattr__ = moved(__name__, "s2s_media.decoding.search", "s2s_media.decoding.types", "s2s_media.inference.evaluate")


def decode_batch(model, feats, lengths, prefix, methods, cfg, lm=None):
    """Deprecated: build a :class:`s2s_media.inference.pipeline.Searcher` and call its ``decode_batch``."""
    memory, mask = model.encode(feats, lengths, chunk_size=cfg.chunk_size, left_chunks=cfg.left_chunks)
    searches = __getattr__("SEARCHES")
    return {m: searches[m](model, memory, mask, prefix, cfg, lm) for m in methods}
