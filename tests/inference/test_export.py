"""``s2s-media export``: a smaller checkpoint for inference that the one loader restores transparently."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import s2s_media
from s2s_media.checkpoint_io import load_checkpoint, save_checkpoint
from s2s_media.cli.main import main
from s2s_media.errors import UserError
from s2s_media.inference.checkpoint import load_model_file, restore_exported
from s2s_media.inference.export import MIN_QUANT, SMALL, _compress, export_checkpoint


@pytest.fixture(scope="module")
def ckpt(tiny_asr_ckpt) -> Path:
    return tiny_asr_ckpt


def test_compress_keeps_small_and_integer_tensors_and_quantises_large_matrices():
    torch.manual_seed(0)
    state = {"big": torch.randn(64, MIN_QUANT // 64), "small": torch.randn(SMALL - 1), "conv": torch.randn(8, 4, 64),
             "steps": torch.tensor([7], dtype=torch.long)}
    out, scales = _compress(state, "int8")
    assert out["big"].dtype == torch.int8 and set(scales) == {"big"}
    assert out["small"].dtype == torch.float32 and torch.equal(out["small"], state["small"])
    assert out["conv"].dtype == torch.float16 and torch.equal(out["steps"], state["steps"])
    half, none = _compress(state, "float16")
    assert half["big"].dtype == torch.float16 and not none


def test_export_int8_is_smaller_and_still_transcribes(ckpt, tiny_corpus, tmp_path):
    out = tmp_path / "int8.pt"
    summary = export_checkpoint(ckpt, out)
    assert summary["dst_bytes"] < summary["src_bytes"] / 2
    # stored int8 weights come back within half a quantisation step of the originals
    restored = restore_exported(load_checkpoint(out), str(out), quantize=False).model.state_dict()
    for k, v in load_model_file(ckpt).model.state_dict().items():
        if v.is_floating_point():
            step = v.abs().max().item() / 127 if v.dim() == 2 else 1e-2 * max(1.0, v.abs().max().item())
            assert (restored[k] - v).abs().max().item() <= step / 2 + 1e-6, k
    quant = s2s_media.load_model(out, device="cpu")
    assert any("quantized.dynamic" in type(m).__module__ for m in quant.model.modules())
    assert quant.transcribe(tiny_corpus / "wav/u00.wav", decoding="ctc_greedy")["segments"]
    assert math.isfinite(quant.transcribe(tiny_corpus / "wav/u00.wav")["duration"])


def test_export_sets_decoding_defaults(ckpt, tmp_path):
    before = load_model_file(ckpt).config.decode
    out = tmp_path / "beam3.pt"
    assert main(["export", str(ckpt), str(out), "--set", "decode.beam=3", "--set", "decode.ctc_weight=0.3"]) == 0
    after = load_model_file(out).config.decode
    assert (after.beam, after.ctc_weight) == (3, 0.3) and before.beam != 3
    assert s2s_media.load_model(out, device="cpu").transcriber().dcfg.beam == 3   # what transcribe uses
    with pytest.raises(UserError, match="only changes decoding defaults"):
        export_checkpoint(ckpt, tmp_path / "x.pt", decode=["train.epochs=1"])
    with pytest.raises(UserError, match="decode"):
        export_checkpoint(ckpt, tmp_path / "x.pt", decode=["decode.nonsense=1"])
    assert not (tmp_path / "x.pt").exists()


def test_float16_export_restores_within_half_precision(ckpt, tmp_path):
    out = tmp_path / "fp16.pt"
    summary = export_checkpoint(ckpt, out, weights="float16", quantize=False)
    assert summary["weights"] == "float16" and summary["quantize"] is None
    original = load_model_file(ckpt).model.state_dict()
    restored = load_model_file(out)
    assert not any("quantized" in type(m).__module__ for m in restored.model.modules())
    for k, v in restored.model.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32 and torch.allclose(v, original[k], rtol=1e-3, atol=1e-3), k


def test_export_refuses_what_it_cannot_do(ckpt, tmp_path):
    out = tmp_path / "int8.pt"
    export_checkpoint(ckpt, out)
    with pytest.raises(UserError, match="already an exported checkpoint"):
        export_checkpoint(out, tmp_path / "again.pt")
    with pytest.raises(UserError, match="--weights int4"):
        export_checkpoint(ckpt, tmp_path / "x.pt", weights="int4")
    odd = load_checkpoint(out)
    odd["export"] = {"weights": "int4"}
    save_checkpoint(odd, tmp_path / "odd.pt")
    with pytest.raises(UserError, match="unknown export format"):
        load_model_file(tmp_path / "odd.pt")
