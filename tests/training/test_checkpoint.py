"""Plain-dict checkpoints: safe loading, atomic writes, clear errors, averaging, rebuilding the model."""
import os

import pytest
import torch

from s2s_media.config import Config, ModelConfig, to_dict
from s2s_media.errors import UserError
from s2s_media.inference.checkpoint import model_from_checkpoint
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import SOS, CharTokenizer
from s2s_media import checkpoint_io
from s2s_media.training.checkpoint import CHECKPOINT_VERSION, average_state_dicts, load_checkpoint, save_checkpoint

N_MELS = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(d_model: int = 32) -> Config:
    cfg = Config()
    cfg.model = ModelConfig(
        encoder="conformer", decoder="transformer", n_mels=N_MELS, ctc_weight=0.3,
        encoder_conf=dict(d_model=d_model, n_heads=4, n_layers=1, ffn_dim=32, kernel_size=3, subsampling_channels=4),
        decoder_conf=dict(n_layers=1, n_heads=4, ffn_dim=32))
    return cfg


def tiny_model_checkpoint(d_model: int = 32):
    tokenizer = CharTokenizer.train(["hello world", "good day"], tasks=["asr"])
    cfg = tiny_config(d_model)
    torch.manual_seed(0)
    model = Seq2SeqModel(cfg.model, tokenizer.vocab_size).eval()
    mean, std = torch.linspace(-3, 3, N_MELS), torch.linspace(0.5, 2, N_MELS)
    model.encoders["audio"].cmvn.set_stats(mean, std)
    weights = {k: v.clone() for k, v in model.state_dict().items()}     # not aliases of the live parameters
    ckpt = {"model": weights, "config": to_dict(cfg), "tokenizer": tokenizer.to_dict(),
            "cmvn": {"mean": mean.tolist(), "std": std.tolist()}, "meta": {"step": 12, "epoch": 1}}
    return model, tokenizer, ckpt


def other_files(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


# --------------------------------------------------------------------------- save / load
def test_save_then_weights_only_load(tmp_path):
    sd = {"w": torch.arange(6.0).view(2, 3), "step": torch.tensor(3)}
    meta = {"epoch": 2, "name": "x", "lrs": [0.1, 0.2]}
    path = save_checkpoint({"model": sd, "meta": meta}, tmp_path / "a" / "c.pt")
    assert path == tmp_path / "a" / "c.pt" and path.is_file()
    raw = torch.load(path, weights_only=True)                 # readable without trusting the file
    assert type(raw) is dict and raw["version"] == CHECKPOINT_VERSION
    ckpt = load_checkpoint(path)
    assert type(ckpt) is dict
    assert set(ckpt) == {"version", "model", "meta"}
    assert torch.equal(ckpt["model"]["w"], sd["w"]) and ckpt["model"]["step"].item() == 3
    assert ckpt["meta"] == meta
    assert other_files(path.parent, "c.pt") == []             # no temp file left behind


def test_full_model_checkpoint_is_weights_only_safe(tmp_path):
    _, _, ckpt = tiny_model_checkpoint()
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == ckpt["config"] and raw["tokenizer"] == ckpt["tokenizer"]


def test_crash_during_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "meta": {"step": 1}}, path)
    before = path.read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial checkpoint")             # half a file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "meta": {"step": 2}}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["meta"] == {"step": 1}
    assert other_files(tmp_path, "last.pt") == []             # the partial temp file is gone


def test_temp_file_is_written_next_to_the_target(tmp_path, monkeypatch):
    """os.replace is only atomic within one filesystem: the temp file must live in the same folder."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_io.os, "replace", spy)
    save_checkpoint({"model": {}}, tmp_path / "x.pt")
    (src, dst), = seen
    assert os.path.dirname(src) == os.path.dirname(dst) == str(tmp_path)


def test_corrupt_file_names_the_path(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(UserError, match=r"broken\.pt: not a readable s2s-media checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match=r"missing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    path = save_checkpoint({"model": {"w": torch.randn(100)}}, tmp_path / "t.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=r"t\.pt"):
        load_checkpoint(path)


def test_pickled_module_is_refused(tmp_path):
    """Checkpoints with arbitrary objects are not loaded (weights_only), but explained."""
    path = tmp_path / "pickled.pt"
    torch.save({"version": 1, "model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(UserError, match=r"pickled\.pt"):
        load_checkpoint(path)


def test_foreign_dict_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match=r"foreign\.pt: not an s2s-media checkpoint"):
        load_checkpoint(path)


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"version": CHECKPOINT_VERSION + 1, "model": {}}, path)
    with pytest.raises(UserError, match=r"future\.pt: checkpoint format 2 is newer"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- averaging
def test_average_of_three_checkpoints_is_the_elementwise_mean(tmp_path):
    g = torch.Generator().manual_seed(0)
    sds = [{"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g),
            "count": torch.tensor(i + 10)} for i in range(3)]
    paths = [save_checkpoint({"model": sd}, tmp_path / f"epoch{i}.pt") for i, sd in enumerate(sds)]
    avg = average_state_dicts(paths)
    assert set(avg) == {"w", "b", "count"}
    torch.testing.assert_close(avg["w"], (sds[0]["w"] + sds[1]["w"] + sds[2]["w"]) / 3, atol=1e-6, rtol=0)
    torch.testing.assert_close(avg["b"], torch.stack([sd["b"] for sd in sds]).mean(0), atol=1e-6, rtol=0)
    assert avg["w"].dtype == torch.float32
    assert avg["count"].dtype == torch.int64 and avg["count"].item() == 12   # integer buffers: the last one
    with pytest.raises(UserError):
        average_state_dicts([])


def test_averaged_weights_load_into_the_model(tmp_path):
    model, _, ckpt = tiny_model_checkpoint()
    paths = []
    for i in range(3):
        sd = {k: v + i if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        paths.append(save_checkpoint({**ckpt, "model": sd}, tmp_path / f"{i}.pt"))
    avg = average_state_dicts(paths)
    model.load_state_dict(avg)                                   # strict: same keys, shapes
    for k, v in ckpt["model"].items():
        expected = v + 1 if v.is_floating_point() else v
        torch.testing.assert_close(avg[k], expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- rebuilding the model
def test_model_from_checkpoint_rebuilds_an_identical_model(tmp_path):
    model, tokenizer, ckpt = tiny_model_checkpoint()
    path = save_checkpoint(ckpt, tmp_path / "best.pt")
    loaded = model_from_checkpoint(load_checkpoint(path), str(path))
    assert not loaded.model.training
    assert loaded.config == tiny_config()
    assert loaded.tokenizer.itos == tokenizer.itos and loaded.tokenizer.prefix() == tokenizer.prefix()
    assert loaded.meta == {"step": 12, "epoch": 1}
    torch.testing.assert_close(loaded.model.encoders["audio"].cmvn.mean, torch.linspace(-3, 3, N_MELS))
    g = torch.Generator().manual_seed(5)
    feats, lengths = torch.randn(2, 40, N_MELS, generator=g), torch.tensor([40, 31])
    tokens = torch.tensor([[SOS, 4, 5, 6], [SOS, 4, 7, 3]])
    with torch.no_grad():
        outputs = []
        for m in (model, loaded.model):
            memory, mask = m.encode(feats, lengths)
            outputs.append((memory, m.decoder(tokens, memory, mask), m.ctc(memory)))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_mismatched_weights_are_a_user_error():
    _, _, ckpt = tiny_model_checkpoint()
    missing = dict(ckpt, model={k: v for k, v in ckpt["model"].items() if not k.startswith("ctc.")})
    with pytest.raises(UserError, match=r"m\.pt: weights do not match.*ctc\.proj"):
        model_from_checkpoint(missing, "m.pt")
    extra = dict(ckpt, model={**ckpt["model"], "decoder.extra.weight": torch.zeros(2)})
    with pytest.raises(UserError, match=r"m\.pt: weights do not match.*decoder\.extra\.weight"):
        model_from_checkpoint(extra, "m.pt")
    # same keys, other shapes: the config says d_model=48 but the weights were trained with 32
    resized = dict(ckpt, config=to_dict(tiny_config(d_model=48)))
    with pytest.raises(UserError, match=r"m\.pt: weights do not match .*size mismatch"):
        model_from_checkpoint(resized, "m.pt")


def test_unusable_config_or_tokenizer_is_a_user_error():
    _, _, ckpt = tiny_model_checkpoint()
    bad_config = dict(ckpt, config={**ckpt["config"], "model": {**ckpt["config"]["model"], "encoder": "rnn"}})
    with pytest.raises(UserError, match=r"m\.pt: config or tokenizer entry is unusable"):
        model_from_checkpoint(bad_config, "m.pt")
    with pytest.raises(UserError, match=r"m\.pt: config or tokenizer entry is unusable"):
        model_from_checkpoint({k: v for k, v in ckpt.items() if k != "tokenizer"}, "m.pt")


def test_the_rename_is_made_durable_by_fsyncing_the_folder(tmp_path, monkeypatch):
    """A power loss after os.replace returned must not undo it: the folder is fsynced after the rename."""
    import stat
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint_io.os, "replace", replace)
    monkeypatch.setattr(checkpoint_io.os, "fsync", fsync)
    save_checkpoint({"model": {}}, tmp_path / "x.pt")
    assert events == ["fsync file", "replace", "fsync dir"]


def test_a_run_can_start_from_an_exported_int8_checkpoint(tmp_path):
    """``train.init_from`` = the bundled (exported) model: int8 rows come back as float32 weights
    within their quantisation step, not as raw integers."""
    from s2s_media.inference.export import export_checkpoint
    from s2s_media.training.run import build_model

    model, tokenizer, ckpt = tiny_model_checkpoint(d_model=64)     # 64 x 64 rows: big enough for int8
    src = save_checkpoint(ckpt, tmp_path / "avg.pt")
    export_checkpoint(src, tmp_path / "int8.pt", weights="int8")
    exported = load_checkpoint(tmp_path / "int8.pt")
    assert any(v.dtype == torch.int8 for v in exported["model"].values())
    cfg = tiny_config(d_model=64)
    cfg.train.init_from = str(tmp_path / "int8.pt")
    started = build_model(cfg, tokenizer, ckpt["cmvn"]).state_dict()
    for k, v in model.state_dict().items():
        step = v.abs().amax(dim=1, keepdim=True) / 127 if k in exported["scales"] else 1e-3 * v.abs().max()
        assert started[k].dtype == v.dtype and torch.all((started[k] - v).abs() <= step / 2 + 1e-6), k
