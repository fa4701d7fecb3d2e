"""Dataset preparers: turn a corpus as it lies on disk into JSONL manifests.

Every preparer has the signature ``prepare_x(src: Path, out: Path, **options) -> dict[str, Path]``
and returns ``{split name: manifest path}``; :data:`PREPARERS` maps the dataset name used by
``s2s-media prepare NAME`` to the function. The usual splits are ``train``, ``dev`` and ``test``
(written as ``OUT/<split>.jsonl``); some corpora add more (LibriSpeech ``dev_other``/``test_other``).

Shared behaviour:

* transcripts are passed through :func:`~s2s_media.text.normalize_text` (the one normaliser used
  for training targets and scoring) and an utterance whose transcript is empty afterwards is skipped;
* problems with single entries (audio without a transcript, a transcript without audio, an
  unreadable file, a Kaldi pipe entry...) are logged one line each (the first few of each kind),
  counted, summarised at the end, and never stop the run;
* a missing SRC, or a SRC without any of the expected files, raises :class:`UserError` naming
  what was expected;
* audio paths that point into SRC are written absolute; audio the preparer creates inside OUT
  (Common Voice ``--convert``) is written relative to the manifest, so OUT can be moved.
"""
from __future__ import annotations

from s2s_media.data.preparers.caption import (prepare_coco, prepare_flickr8k, prepare_flickr30k, prepare_image_folder,
                                              prepare_synthetic_shapes)
from s2s_media.data.preparers.formats import prepare_lhotse, prepare_nemo
from s2s_media.data.preparers.common import (Issues, Preparer, header_duration, make_record, progress, require_dir,
                                             write_splits)
from s2s_media.data.preparers.speech import (convert_clip, is_kaldi_dir, kaldi_records, librispeech_split,
                                             prepare_commonvoice, prepare_kaldi, prepare_librispeech,
                                             prepare_synthetic, read_commonvoice_tsv, read_kaldi_table,
                                             resolve_kaldi_path)

PREPARERS: dict[str, Preparer] = {
    "librispeech": prepare_librispeech,
    "commonvoice": prepare_commonvoice,
    "kaldi": prepare_kaldi,
    "synthetic": prepare_synthetic,
    "coco": prepare_coco,
    "flickr8k": prepare_flickr8k,
    "flickr30k": prepare_flickr30k,
    "image_folder": prepare_image_folder,
    "synthetic_shapes": prepare_synthetic_shapes,
    "lhotse": prepare_lhotse,
    "nemo": prepare_nemo,
}

NO_SOURCE = {"synthetic_shapes"}   # generators called as 'prepare NAME OUT'
CAPTION_PREPARERS = {"coco", "flickr8k", "flickr30k", "image_folder", "synthetic_shapes"}

__all__ = [
    "PREPARERS", "NO_SOURCE", "CAPTION_PREPARERS", "Preparer", "Issues", "make_record", "write_splits", "require_dir",
    "progress", "header_duration", "prepare_librispeech", "prepare_commonvoice", "prepare_kaldi", "prepare_synthetic",
    "prepare_coco", "prepare_flickr8k", "prepare_flickr30k", "prepare_image_folder", "prepare_synthetic_shapes",
    "prepare_lhotse", "prepare_nemo", "librispeech_split", "read_commonvoice_tsv", "convert_clip", "is_kaldi_dir", "read_kaldi_table",
    "resolve_kaldi_path", "kaldi_records",
]
