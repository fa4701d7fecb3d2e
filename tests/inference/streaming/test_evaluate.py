"""Streaming vs offline WER on a manifest, and the script around it."""
import importlib.util
from pathlib import Path

from s2s_media.config import to_dict
from s2s_media.inference.evaluate import evaluate_streaming as evaluate_manifest
from s2s_media.inference.streaming import EndpointConfig, StreamingConfig, StreamingRecognizer
from s2s_media.training.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[3] / "scripts/eval_streaming.py"


def test_streaming_and_offline_wer_agree_without_endpointing(loaded, tiny_corpus):
    rec = StreamingRecognizer(loaded, StreamingConfig(endpoint=EndpointConfig(enabled=False)))
    result = evaluate_manifest(rec, tiny_corpus / "dev.jsonl", chunk_samples=800)
    assert result.utterances == 3 and result.identical == 3
    assert result.streaming == result.offline and result.streaming.ref_len > 0
    assert [r["id"] for r in result.rows] == ["u00", "u01", "u02"]
    assert set(result.summary()) >= {"streaming_wer", "offline_wer", "streaming_rtf", "offline_rtf"}


def test_eval_streaming_script_prints_both_wers(loaded, tiny_corpus, tmp_path, capsys):
    ckpt = save_checkpoint({"model": loaded.model.state_dict(), "config": to_dict(loaded.config),
                            "tokenizer": loaded.tokenizer.to_dict(), "meta": {}}, tmp_path / "tiny.pt")
    spec = importlib.util.spec_from_file_location("eval_streaming", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out_json = tmp_path / "out.json"
    assert script.main(["--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl"), "--no-endpoint",
                        "--chunk-size", "8", "--limit", "2", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "streaming WER" in out and "offline   WER" in out and "identical texts: 2 / 2" in out
    assert out_json.is_file()
    assert script.main(["--model", str(tmp_path / "missing.pt"), "--manifest", str(tiny_corpus / "dev.jsonl")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
