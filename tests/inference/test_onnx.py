"""ONNX export and the onnxruntime path: equal to torch within stated tolerances, streaming equal to offline,
batch-independent int8, torch-free import, and one-line errors for broken directories."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import s2s_media
from s2s_media.cli.main import main
from s2s_media.config import Config, ModelConfig, to_dict
from s2s_media.decoding.ctc import ctc_greedy
from s2s_media.decoding.rescoring import attention_scores
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE
from s2s_media.inference.checkpoint import LoadedModel
from s2s_media.inference.loader import load_any
from s2s_media.inference.evaluate import offline_decode
from s2s_media.inference.onnx_export import export_onnx
from s2s_media.inference.onnx_model import OnnxSeq2Seq, load_onnx_model
from s2s_media.inference.onnx_runtime import MANIFEST, OnnxSpeechModel, file_digest
from s2s_media.inference.streaming import EndpointConfig, StreamingConfig, StreamingRecognizer
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import CharTokenizer, task_prefix

# float32 graphs against torch: the same float32 arithmetic in another order
ENC_TOL, CTC_TOL, DEC_TOL = 1e-4, 1e-4, 1e-3

CONFORMER = {"d_model": 32, "n_heads": 2, "n_layers": 2, "ffn_dim": 64, "kernel_size": 5, "causal": True,
             "dropout": 0.0, "subsampling_channels": 8}
# conformer_v2-like: the conv1d front and a run of blocks at half frame rate (an inner cache level)
CONFORMER_V2 = {**CONFORMER, "n_layers": 4, "subsampling": "conv1d", "half_rate_blocks": [1, 3]}
CONFIGS = {"conformer": ("conformer", CONFORMER), "conformer_v2": ("conformer", CONFORMER_V2),
           "transformer": ("transformer", {k: v for k, v in CONFORMER.items() if k not in ("kernel_size", "causal")})}


def tiny_loaded(encoder: str, conf: dict, seed: int = 0) -> LoadedModel:
    """A random tiny speech model whose CTC head rarely says blank, so every search returns tokens."""
    torch.manual_seed(seed)
    tok = CharTokenizer.train(["the quick brown fox"], tasks=["asr"])
    cfg = Config(model=ModelConfig(encoder=encoder, encoder_conf=dict(conf), ctc_weight=0.5, n_mels=80,
                                   decoder_conf={"n_layers": 1, "n_heads": 2, "ffn_dim": 64, "dropout": 0.0}))
    model = Seq2SeqModel(cfg.model, tok.vocab_size).eval()
    with torch.no_grad():
        model.ctc.proj.bias[0] = -2.0
        model.encoders["audio"].cmvn.set_stats(torch.full((80,), -5.0), torch.full((80,), 2.0))
    return LoadedModel(model, tok, cfg, {"note": "tiny"})


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, tmp_path_factory) -> tuple[LoadedModel, Path]:
    loaded = tiny_loaded(*CONFIGS[request.param])
    out = tmp_path_factory.mktemp("onnx") / request.param
    export_onnx(loaded, out, weights="float32")
    return loaded, out


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory) -> tuple[LoadedModel, Path]:
    loaded = tiny_loaded(*CONFIGS["conformer"])
    out = tmp_path_factory.mktemp("onnx") / "int8"
    export_onnx(loaded, out, weights="int8")
    return loaded, out


def log_mels(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = -5.0 + 2.0 * torch.randn(len(lengths), max(lengths), 80, generator=g)
    return x, torch.tensor(lengths)


def close(a: np.ndarray, b: torch.Tensor, tol: float) -> None:
    assert a.shape == tuple(b.shape)
    assert np.abs(a - b.numpy()).max() <= tol


@pytest.mark.parametrize("chunk_size,left_chunks", [(0, -1), (4, -1), (4, 1), (6, 2)])
def test_encoder_and_ctc_equal_torch(exported, chunk_size, left_chunks):
    loaded, out = exported
    rt = OnnxSpeechModel(out, threads=1)
    feats, lengths = log_mels([131, 64, 23])
    with torch.no_grad():
        memory, mask = loaded.model.encode(feats, lengths, chunk_size=chunk_size, left_chunks=left_chunks)
        log_probs = loaded.model.ctc(memory)
    got, got_lengths = rt.encode(feats.numpy(), lengths.numpy(), chunk_size, left_chunks)
    assert got_lengths.tolist() == mask.sum(1).tolist()
    valid = mask.numpy()
    close(got * valid[..., None], memory * mask[..., None], ENC_TOL)
    close(rt.ctc_log_probs(got) * valid[..., None], log_probs * mask[..., None], CTC_TOL)


def test_chunk_caches_equal_torch_caches(exported):
    """forward_chunk stream by stream: outputs and every cache tensor, at both frame rates, as torch's."""
    loaded, out = exported
    rt, enc = OnnxSpeechModel(out, threads=1), loaded.model.encoders["audio"]
    feats, lengths = log_mels([4 * 16 + 3, 4 * 9 + 3])
    x = enc.normalise(feats)
    cache, np_cache = enc.init_cache(2, "cpu"), rt.init_cache(2)
    for first, n in ((0, 4), (4, 4), (8, 8)):            # chunks of 4, 4 and 8 frames; stream 1 ends early
        window = x[:, 4 * first:4 * first + 4 * n + 3]
        part = (lengths - 4 * first).clamp(0, window.size(1))
        with torch.no_grad():
            ref, ref_lengths, cache = enc.forward_chunk(window, part, cache, 8)
        got, got_lengths, np_cache = rt.forward_chunk(window.numpy(), part.numpy(), np_cache, 8)
        assert got_lengths.tolist() == ref_lengths.tolist()
        for b, m in enumerate(ref_lengths.tolist()):
            close(got[b, :m], ref[b, :m], ENC_TOL)
        for mine, theirs in zip(np_cache.levels(), [cache] + ([cache.inner] if cache.inner is not None else [])):
            assert mine.offset.tolist() == theirs.offset.tolist() and mine.lengths.tolist() == theirs.lengths.tolist()
            for a, b in zip(mine.keys + mine.values + mine.conv, theirs.keys + theirs.values + theirs.conv):
                close(a, b, ENC_TOL)


def test_decoder_scores_equal_torch(exported):
    loaded, out = exported
    onnx = load_onnx_model(out)
    feats, lengths = log_mels([90, 50])
    with torch.no_grad():
        memory, mask = loaded.model.encode(feats, lengths)
    hyps, utt = [[5, 6, 7], [8], [], [5, 5, 9, 10, 6]], [0, 0, 1, 1]
    prefix = task_prefix(loaded.tokenizer, "asr")
    want = attention_scores(loaded.model.decoder, memory, mask, hyps, utt, prefix)
    got = attention_scores(onnx.model.decoder, memory, mask, hyps, utt, prefix)
    assert np.isfinite(want).all() and np.abs(got - want).max() <= DEC_TOL


def test_attention_beam_search_equals_torch(exported):
    """The attention beam search on onnxruntime (the teacher-forced graph fed step by step) finds the torch
    decoder's hypotheses, n-best included, with scores within DEC_TOL, and the same CTC-aligned frames."""
    from s2s_media.config import DecodeConfig
    from s2s_media.inference.pipeline import Searcher
    loaded, out = exported
    onnx = load_onnx_model(out)
    feats, lengths = log_mels([400, 90, 300])
    decode = DecodeConfig(method="attention", beam=4)
    results = []
    for model in (loaded, onnx):
        searcher = Searcher(model, decode, nbest=3)
        with model.model.inference_mode() if model is onnx else torch.no_grad():
            memory, mask = searcher.encode(feats.numpy(), lengths.numpy())
            hyps = searcher.search(memory, mask)
            searcher.add_frames(memory, mask, hyps)
        results.append(hyps)
    for want, got in zip(*results):
        assert want.tokens and got.tokens == want.tokens and abs(got.score - want.score) <= DEC_TOL
        assert [a.tokens for a in got.alternatives] == [a.tokens for a in want.alternatives]
        assert len(want.alternatives) == 3
        assert got.frames == want.frames and np.allclose(got.probs, want.probs, atol=1e-3)


@pytest.mark.parametrize("method", ["ctc_greedy", "ctc_prefix_beam", "rescoring", "attention"])
def test_every_decoding_method_transcribes_on_onnx_as_on_torch(onnx_cli_dir, tiny_asr_ckpt, tiny_corpus, method):
    """Each method, with the n-best alternatives and (in the CTC prefix searches) hotwords, gives the torch
    path's transcript, words and alternatives on the ONNX runtime."""
    wav = tiny_corpus / "wav/u01.wav"
    torch_model = s2s_media.load_model(tiny_asr_ckpt, device="cpu")
    onnx_model = s2s_media.load_model(onnx_cli_dir)
    options = [{}, {"alternatives": 3}]
    if method in ("ctc_prefix_beam", "rescoring"):
        text = torch_model.transcribe(wav, decoding=method, punctuation=False)["text"]
        options.append({"hotwords": (f"{text.split()[0]}:3.0",)} if text else {"hotwords": ("the:3.0",)})
    for opts in options:
        want = torch_model.transcribe(wav, decoding=method, punctuation=False, **opts)
        got = onnx_model.transcribe(wav, decoding=method, punctuation=False, **opts)
        assert got["text"] == want["text"], (opts, got["text"], want["text"])
        assert [w["word"] for w in got["words"]] == [w["word"] for w in want["words"]]
        assert [w["start"] for w in got["words"]] == [w["start"] for w in want["words"]]
        if "alternatives" in opts:
            assert [a["text"] for a in got["alternatives"]] == [a["text"] for a in want["alternatives"]]


def test_streaming_through_onnx_equals_offline_with_the_chunk_mask(exported, tmp_path):
    """The streaming recogniser on the ONNX model: the same text as offline decoding of the same audio with
    the chunk mask (ONNX), and as the torch model's streaming."""
    loaded, out = exported
    wav = (0.1 * np.random.default_rng(3).standard_normal(int(2.3 * SAMPLE_RATE))).astype(np.float32)
    cfg = StreamingConfig(chunk_size=4, num_left_chunks=2, rescore=True, lm_weight=0.0,
                          endpoint=EndpointConfig(enabled=False))      # one segment, like offline decoding
    texts = {}
    for name, model in (("onnx", load_onnx_model(out)), ("torch", loaded)):
        rec = StreamingRecognizer(model, cfg)
        streamed = " ".join(f["text"] for f in rec.transcribe_stream(wav, chunk_samples=1234))
        offline = loaded.tokenizer.decode(offline_decode(rec, wav).tokens)
        assert streamed == offline and streamed
        texts[name] = streamed
    assert texts["onnx"] == texts["torch"]


def test_int8_results_do_not_depend_on_batch_neighbours(int8_dir):
    """Weight-only int8 with per-row activation blocks: an utterance's CTC posteriors alone and in a batch
    with others agree to float rounding (a shared activation scale would move them by ~1e-2), and so do
    greedy transcripts; int8 stays near the float model."""
    loaded, out = int8_dir
    rt = OnnxSpeechModel(out, threads=1)
    feats, lengths = log_mels([120, 77, 40], seed=5)
    loud = feats.clone()
    loud[1:] *= 3.0                                         # neighbours with a much larger range
    alone, n = rt.encode(feats[:1, :120].numpy(), lengths[:1].numpy())
    batched, _ = rt.encode(loud.numpy(), lengths.numpy())
    a, b = rt.ctc_log_probs(alone)[0, :n[0]], rt.ctc_log_probs(batched)[0, :n[0]]
    assert np.abs(a - b).max() < 1e-4
    assert ctc_greedy(torch.from_numpy(a)[None])[0].tokens == ctc_greedy(torch.from_numpy(b)[None])[0].tokens
    with torch.no_grad():
        ref = loaded.model.ctc(loaded.model.encode(feats[:1, :120], lengths[:1])[0])[0]
    assert np.abs(np.exp(a) - np.exp(ref.numpy())).max() < 0.1           # posteriors within 0.1 of float32
    import onnx
    for name in ("encoder", "decoder"):
        graph = onnx.load(str(out / f"{name}.onnx")).graph
        weights = {w.name for w in graph.initializer}
        ops = {n.op_type for n in graph.node}
        assert "MatMulNBits" in ops and "DynamicQuantizeLinear" not in ops
        assert not [n.name for n in graph.node if n.op_type == "MatMul" and set(n.input) & weights]


def test_runtime_imports_and_runs_without_torch(exported):
    """The runtime module under a meta-path guard that makes ``import torch`` fail: it loads the directory,
    encodes and gives CTC log-probs equal to torch's."""
    loaded, out = exported
    feats, lengths = log_mels([80])
    np.save(out.parent / "feats.npy", feats.numpy())
    code = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchaudio", "torchvision"):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from s2s_media.inference.onnx_runtime import OnnxSpeechModel
        rt = OnnxSpeechModel({str(out)!r}, threads=1)
        memory, n = rt.encode(np.load({str(out.parent / 'feats.npy')!r}), np.array([80]))
        np.save({str(out.parent / 'lp.npy')!r}, rt.ctc_log_probs(memory)[0, :n[0]])
        assert "torch" not in sys.modules
        print(rt.tokenizer.decode([5, 6]))
    """)
    root = Path(s2s_media.__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with torch.no_grad():
        want = loaded.model.ctc(loaded.model.encode(feats, lengths)[0])[0]
    close(np.load(out.parent / "lp.npy"), want, CTC_TOL)


# --------------------------------------------------------------------------- the user-facing paths
@pytest.fixture(scope="module")
def onnx_cli_dir(tiny_asr_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model_onnx"
    assert main(["export", "--format", "onnx", "--weights", "float32", str(tiny_asr_ckpt), str(out)]) == 0
    return out


def test_cli_export_then_transcribe_and_api_pick_onnx(onnx_cli_dir, tiny_asr_ckpt, tiny_corpus, tmp_path):
    manifest = json.loads((onnx_cli_dir / MANIFEST).read_text())
    assert set(manifest["files"]) >= {"encoder", "ctc", "decoder"} and manifest["cmvn"]["mean"]
    model = s2s_media.load_model(onnx_cli_dir)                       # picked by the directory
    assert isinstance(model.model, OnnxSeq2Seq)
    wav = tiny_corpus / "wav/u00.wav"
    torch_rec = s2s_media.load_model(tiny_asr_ckpt, device="cpu").transcribe(wav, decoding="rescoring")
    onnx_rec = model.transcribe(wav, decoding="rescoring")
    assert onnx_rec["text"] == torch_rec["text"] and onnx_rec["duration"] == torch_rec["duration"]
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", str(wav), "--model", str(onnx_cli_dir), "--runtime", "onnx", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["text"] == torch_rec["text"]
    with pytest.raises(UserError, match="--runtime torch needs a checkpoint file"):
        s2s_media.load_model(onnx_cli_dir, runtime="torch")


def test_serve_loads_an_onnx_recognizer(onnx_cli_dir, tiny_corpus):
    from s2s_media.cli.serve import load_recognizer
    rec = load_recognizer(onnx_cli_dir, 4, "auto")
    assert isinstance(rec.model, OnnxSeq2Seq)
    wav, _ = sf.read(tiny_corpus / "wav/u01.wav", dtype="float32")
    assert rec.transcribe_stream(wav)


def test_runtime_onnx_with_a_checkpoint_exports_once_into_the_cache(tiny_asr_ckpt, monkeypatch, tmp_path):
    monkeypatch.setenv("S2S_MEDIA_CACHE", str(tmp_path))
    loaded = load_any(tiny_asr_ckpt, runtime="onnx")
    assert isinstance(loaded.model, OnnxSeq2Seq)
    (made,) = (tmp_path / "onnx").iterdir()
    stamp = (made / MANIFEST).stat().st_mtime_ns
    load_any(tiny_asr_ckpt, runtime="onnx")
    assert (made / MANIFEST).stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------- broken directories
@pytest.fixture
def broken(exported, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(exported[1], copy)
    return copy


def _one_line(excinfo, *words) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_missing_or_mismatched_files_name_the_file(broken):
    (broken / "ctc.onnx").unlink()
    with pytest.raises(UserError) as e:
        OnnxSpeechModel(broken)
    _one_line(e, "ctc.onnx", "missing", "export --format onnx")
    shutil.copy(broken / "decoder.onnx", broken / "ctc.onnx")          # a file from elsewhere
    with pytest.raises(UserError) as e:
        OnnxSpeechModel(broken)
    _one_line(e, "ctc.onnx", "does not match manifest.json", "copy the whole directory again")
    (broken / MANIFEST).unlink()
    with pytest.raises(UserError) as e:
        s2s_media.load_model(broken)
    _one_line(e, "manifest.json", "missing", "export --format onnx")


def test_an_opset_the_runtime_lacks_is_one_line(broken):
    import onnx
    path = broken / "ctc.onnx"
    graph = onnx.load(str(path))
    for entry in graph.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = 99
    onnx.save(graph, str(path))
    manifest = json.loads((broken / MANIFEST).read_text())
    manifest["files"]["ctc"].update(bytes=path.stat().st_size, sha256=file_digest(path))
    (broken / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError) as e:
        OnnxSpeechModel(broken)
    _one_line(e, "ctc.onnx", "opset 99", "upgrade onnxruntime", "--opset")


def test_a_language_model_of_another_tokenizer_is_refused(broken, tmp_path):
    from s2s_media.lm import NgramLM
    from s2s_media.lm.files import save_lm_file
    other = CharTokenizer.train(["completely different letters xyz"], tasks=["asr"])
    lm = NgramLM.train([other.encode("xyz zyx")], order=2, vocab_size=other.vocab_size, bos=2, eos=3)
    save_lm_file(tmp_path / "other.pt", lm, other, {})
    with pytest.raises(UserError) as e:
        load_onnx_model(broken, lm=tmp_path / "other.pt")
    _one_line(e, "other.pt", "tokenizer")


def test_export_refuses_models_without_a_chunked_encoder(tmp_path):
    loaded = tiny_loaded("conformer", {**CONFORMER, "causal": False})
    with pytest.raises(UserError, match="causal"):
        export_onnx(loaded, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_manifest_config_round_trips(exported):
    loaded, out = exported
    assert load_onnx_model(out).config.model == loaded.config.model
    assert json.loads((out / MANIFEST).read_text())["config"] == to_dict(loaded.config)


def test_the_cli_offers_the_loader_runtimes():
    from s2s_media.cli.runtime import RUNTIMES as CLI_RUNTIMES
    from s2s_media.inference.loader import RUNTIMES
    assert CLI_RUNTIMES == RUNTIMES


def test_a_numpy_language_model_of_another_tokenizer_is_refused(exported, tmp_path):
    """lm.npz (what an ONNX directory ships) records its tokenizer: another model's is one line naming the file."""
    from s2s_media.lm import NgramLM
    from s2s_media.lm.files import lm_for_model, save_lm_npz
    other = CharTokenizer.train(["completely different letters xyz"], tasks=["asr"])
    lm = NgramLM.train([other.encode("xyz zyx")], order=2, vocab_size=other.vocab_size, bos=2, eos=3)
    save_lm_npz(tmp_path / "lm.npz", lm, other, {})
    assert lm_for_model(tmp_path / "lm.npz", other).num_ngrams == lm.num_ngrams
    with pytest.raises(UserError) as e:
        lm_for_model(tmp_path / "lm.npz", exported[0].tokenizer)
    _one_line(e, "lm.npz", "tokenizer")


def test_an_older_directory_format_asks_for_a_new_export(broken):
    manifest = json.loads((broken / MANIFEST).read_text())
    (broken / MANIFEST).write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(UserError) as e:
        OnnxSpeechModel(broken)
    _one_line(e, "manifest.json", "format version 1", "export --format onnx")
