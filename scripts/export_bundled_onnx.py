#!/usr/bin/env python3
"""Make the ONNX form of the bundled models from their checkpoints, for a runtime (torch-free) install.

    python scripts/export_bundled_onnx.py            # after replacing s2s_media/assets/asr_default.pt

Writes, from the files beside them in ``s2s_media/assets``:

- ``asr_default.onnx/``: ``s2s-media export --format onnx asr_default.pt`` (int8 weights, its language model),
  without a punctuation model of its own, plus ``calibration.json`` (a copy of ``asr_default.calibration.json``).
  Its ``manifest.json`` records the sha256 of the ``.pt`` it was made from (``source``), which
  ``tests/test_bundled_model.py`` compares with the shipped ``.pt``.
- ``punct_default.onnx``: ``punct_default.pt`` as ONNX (its source's sha256 in the graph's metadata). It is the
  bundled punctuation model of a runtime install, shared by every ONNX model that writes normalised English
  (:func:`~s2s_media.inference.punctuation.bundled_punctuation_path`), so the ASR directory does not hold a
  second copy.

Needs the ``train`` extra (torch, onnx). Each output is written beside its final place and moved in at the end;
an output already made from the same checkpoint is left alone unless ``--force``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "s2s_media" / "assets"


def export_asr(assets: Path, force: bool) -> str:
    from s2s_media.inference.onnx_export import export_onnx_checkpoint, source_entry
    from s2s_media.inference.onnx_runtime import MANIFEST
    src, out = assets / "asr_default.pt", assets / "asr_default.onnx"
    if not force and (out / MANIFEST).is_file():
        made_from = json.loads((out / MANIFEST).read_text()).get("source")
        if made_from == source_entry(src):
            return f"{out.name}: already made from {src.name}; left alone (--force to redo)"
    with tempfile.TemporaryDirectory(prefix=".asr_default.", dir=assets) as tmp:
        new = Path(tmp) / out.name
        summary = export_onnx_checkpoint(src, new, punctuation=False)
        calibration = src.with_suffix(".calibration.json")
        if calibration.is_file():
            shutil.copyfile(calibration, new / "calibration.json")
        if out.exists():
            shutil.rmtree(out)
        new.chmod(0o755)          # a temporary folder is private
        new.rename(out)
    return (f"{out.name}: {summary['dst_bytes'] / 1e6:.1f} MB (from {src.name}, "
            f"{summary['src_bytes'] / 1e6:.1f} MB), weights {summary['weights']}"
            f"{', with its language model' if summary['lm'] else ''}")


def export_punct(assets: Path, force: bool) -> str:
    from s2s_media.inference.onnx_export import export_punctuation, source_entry
    from s2s_media.inference.onnx_runtime import OnnxTagger
    from s2s_media.inference.punctuation import Punctuator
    src, out = assets / "punct_default.pt", assets / "punct_default.onnx"
    if not force and out.is_file() and OnnxTagger(out).info.get("source") == source_entry(src):
        return f"{out.name}: already made from {src.name}; left alone (--force to redo)"
    with tempfile.TemporaryDirectory(prefix=".punct_default.", dir=assets) as tmp:
        new = Path(tmp) / out.name
        export_punctuation(Punctuator.load(src), new, source=source_entry(src))
        new.replace(out)
    return f"{out.name}: {out.stat().st_size / 1e6:.1f} MB (from {src.name}, {src.stat().st_size / 1e6:.1f} MB)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, default=ASSETS, help="the folder of the bundled models (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="export even what is already made from the same checkpoint")
    args = p.parse_args()
    for step in (export_asr, export_punct):
        print(step(args.assets, args.force), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
