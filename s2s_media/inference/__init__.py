"""Inference: the one checkpoint loader, the encode-then-search core, and the user-facing pipelines
(transcriber, captioner, streaming recogniser, evaluation, writers)."""
