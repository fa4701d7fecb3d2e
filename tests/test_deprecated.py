"""Module paths that moved keep working for one release, with a DeprecationWarning (README: "Moved modules")."""
from __future__ import annotations

import importlib
import sys

import pytest

# old path -> a name it must still give, and the module that name now lives in
MOVED = {
    "s2s_media.audio": ("load_audio", "s2s_media.frontend.audio"),
    "s2s_media.vision": ("load_image", "s2s_media.frontend.vision"),
    "s2s_media.vad": ("segment", "s2s_media.frontend.vad"),
    "s2s_media.augment": ("AugmentConfig", "s2s_media.frontend.augment"),
    "s2s_media.model": ("load", "s2s_media.api"),
    "s2s_media.transcribe": ("Transcriber", "s2s_media.inference.transcriber"),
    "s2s_media.caption": ("Captioner", "s2s_media.inference.captioner"),
    "s2s_media.output": ("open_writer", "s2s_media.inference.writers"),
    "s2s_media.report": ("write_html", "s2s_media.inference.report"),
    "s2s_media.export": ("export_checkpoint", "s2s_media.inference.export"),
    "s2s_media.streaming": ("StreamingRecognizer", "s2s_media.inference.streaming.recognizer"),
    "s2s_media.streaming.recognizer": ("Stream", "s2s_media.inference.streaming.recognizer"),
    "s2s_media.streaming.evaluate": ("evaluate_manifest", "s2s_media.inference.evaluate"),
    "s2s_media.models.build": ("load_model_file", "s2s_media.inference.checkpoint"),
    "s2s_media.decoding.recognizer": ("SEARCHES", "s2s_media.decoding.search"),
    "s2s_media.lm.corpus": ("lm_for_model", "s2s_media.lm.files"),
    "s2s_media.data.caption_preparers": ("prepare_coco", "s2s_media.data.preparers.caption"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_still_works(old):
    name, home = MOVED[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(home), name)
    with pytest.raises(AttributeError, match="moved to"):
        module.no_such_name


def test_old_helpers_keep_their_meaning(tmp_path):
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("s2s_media.transcribe", None)
        transcribe = importlib.import_module("s2s_media.transcribe")
    from s2s_media.inference.checkpoint import bundled_model_path
    assert transcribe.default_model_path() == bundled_model_path("asr")
