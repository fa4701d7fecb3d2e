"""``s2s-media lm``, LM files, ``export --lm`` and the LM in evaluate/transcribe, on the tiny model."""
import json

import pytest
import torch

import s2s_media
from s2s_media.cli.main import main
from s2s_media.decoding.native import KenLMFusion
from s2s_media.decoding.search import SEARCHES
from s2s_media.errors import UserError
from s2s_media.lm import LMFusion, NgramLM
from s2s_media.lm.arpa import arpa_words
from s2s_media.lm.files import lm_for_model
from s2s_media.training.lm import lm_sentences
from s2s_media.inference.checkpoint import load_model_file
from s2s_media.text.tokenizer import tokenizer_from_dict


@pytest.fixture(scope="module")
def ckpt(tiny_asr_ckpt):
    return tiny_asr_ckpt


def sentences(corpus) -> list[str]:
    return [json.loads(line)["text"] for line in (corpus / "train.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lm_file(ckpt, tiny_corpus, tmp_path_factory):
    text = tmp_path_factory.mktemp("lm") / "text.txt"
    # the non-dev sentences twice each on one line (two sentences a line), plus a dev sentence
    said = sentences(tiny_corpus)
    text.write_text("".join(f"{s}. {s}!\n" for s in said[3:]) + said[0] + "\n")
    out = text.parent / "lm.pt"
    assert main(["lm", str(text), "--tokenizer", str(ckpt), "-o", str(out), "--order", "4", "--arpa",
                 str(out.with_suffix(".arpa")), "--exclude", str(tiny_corpus / "dev.jsonl"),
                 "--dev", str(tiny_corpus / "dev.jsonl")]) == 0
    return out


def test_lm_cli_writes_the_same_lm_as_arpa(lm_file, ckpt):
    lm_dict = torch.load(lm_file, weights_only=True)
    lm, tokenizer = NgramLM.from_dict(lm_dict["lm"]), tokenizer_from_dict(lm_dict["tokenizer"])
    words = arpa_words(tokenizer.itos, lm.bos, lm.eos)
    ken = KenLMFusion(lm_file.with_suffix(".arpa"), words, 1.0)
    for text in ["the cat", "a", ""]:
        ids = tokenizer.encode(text)
        assert ken.end(ids) == pytest.approx(lm.log_probs(tuple(ids))[lm.eos], abs=1e-4)


def test_lm_file_is_plain_and_leaves_the_held_out_text_out(lm_file, tiny_corpus):
    d = torch.load(lm_file, weights_only=True)
    assert d["kind"] == "ngram" and d["lm"]["order"] == 4
    assert d["meta"]["sentences"] == len(sentences(tiny_corpus)) - 3   # duplicates merged, dev sentence out
    assert d["meta"]["excluded_sentences"] == 3 and d["meta"]["dev_perplexity"] > 1.0


def test_held_out_sentences_are_excluded_both_ways(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("The cat sat. I think the cat sat on the mat! Cat. A dog ran. A dog ran.\nA bird sang.\n")
    got = list(lm_sentences([str(src)], {"the cat sat on the mat"}))
    # "the cat sat" and "cat" lie inside the held-out sentence; the second sentence contains it
    assert got == ["a dog ran", "a bird sang"]


def test_export_stores_the_lm_and_decoding_fuses_it(ckpt, lm_file, tiny_corpus, tmp_path, monkeypatch):
    out = tmp_path / "with_lm.pt"
    assert main(["export", str(ckpt), str(out), "--lm", str(lm_file), "--set", "decode.lm_weight=0.7"]) == 0
    loaded = load_model_file(out)
    assert loaded.lm is not None and loaded.lm.order == 4
    fusion = loaded.fusion(loaded.config.decode)
    assert isinstance(fusion, LMFusion) and fusion.weight == 0.7
    seen = []
    real = SEARCHES["rescoring"]

    def spy(model, memory, mask, prefix, cfg, lm=None, **options):
        seen.append(lm)
        return real(model, memory, mask, prefix, cfg, lm, **options)
    monkeypatch.setitem(SEARCHES, "rescoring", spy)
    model = s2s_media.load_model(out, device="cpu")
    rec = model.transcribe(tiny_corpus / "wav/u00.wav", decoding="rescoring")
    assert "text" in rec and isinstance(seen[-1], LMFusion) and seen[-1].weight == 0.7
    model.transcribe(tiny_corpus / "wav/u00.wav", decoding="rescoring", lm_weight=0.0)
    assert seen[-1] is None                                                     # --lm-weight 0: off
    assert load_model_file(ckpt).fusion(loaded.config.decode) is None          # no LM stored: none fused


def test_evaluate_with_an_lm_file(ckpt, lm_file, tiny_corpus, tmp_path):
    out = tmp_path / "dec"
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(tiny_corpus / "dev.jsonl"), "--lm", str(lm_file),
                 "--lm-weight", "0.4", "--decoding", "ctc_prefix_beam,rescoring", "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["lm"] == {"weight": 0.4, "bonus": 1.0}         # --lm-weight given, the default bonus
    assert set(scores["scores"]) == {"ctc_prefix_beam", "rescoring"}


def test_an_lm_of_another_tokenizer_or_no_lm_file_is_refused(ckpt, tmp_path, capsys):
    from s2s_media.lm import NgramLM
    from s2s_media.training.lm import save_lm_file
    from s2s_media.text.tokenizer import CharTokenizer
    other = CharTokenizer.train(["xyz"])
    path = save_lm_file(tmp_path / "other.pt", NgramLM.train([[4, 5]], 2, other.vocab_size, 2, 3), other, {})
    tokenizer = load_model_file(ckpt).tokenizer
    with pytest.raises(UserError, match="another tokenizer"):
        lm_for_model(path, tokenizer)
    assert main(["export", str(ckpt), str(tmp_path / "x.pt"), "--lm", str(path)]) == 2
    assert "another tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    assert main(["export", str(ckpt), str(tmp_path / "x.pt"), "--lm", str(tmp_path / "missing.pt")]) == 2
    assert "language model file not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable language model file"):
        lm_for_model(tmp_path / "junk.pt", tokenizer)


def test_lm_command_errors_are_one_line(ckpt, tmp_path, capsys):
    assert main(["lm", str(tmp_path / "nope.txt"), "--tokenizer", str(ckpt), "-o", str(tmp_path / "o.pt")]) == 2
    assert "text source not found" in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("hello world\n")
    assert main(["lm", str(tmp_path / "t.txt"), "--tokenizer", str(ckpt), "-o", str(tmp_path / "o.pt"),
                 "--order", "0"]) == 2
    assert "--order 0" in capsys.readouterr().err


def test_rescoring_the_best_one_keeps_the_ctc_choice(ckpt, lm_file, tiny_corpus):
    import dataclasses

    from s2s_media.data.dataset import eval_loader
    from s2s_media.data.manifest import read_manifest
    from s2s_media.inference.pipeline import Searcher
    loaded = load_model_file(ckpt, lm=lm_file)
    batch = next(iter(eval_loader(read_manifest(tiny_corpus / "train.jsonl"), loaded.tokenizer, 80, 100, 0)))
    cfg = dataclasses.replace(loaded.config.decode, beam=6, rescore_nbest=1)
    searcher = Searcher(loaded, cfg, methods=["ctc_prefix_beam", "rescoring"])
    assert searcher.lm is not None
    out = searcher.decode_batch(batch["feats"], batch["lengths"])
    assert out["rescoring"] and [h.tokens for h in out["rescoring"]] == [h.tokens for h in out["ctc_prefix_beam"]]
    assert out["rescoring"][0].score != out["ctc_prefix_beam"][0].score      # it was rescored, to the same end


def test_tune_script_prints_a_sorted_grid(ckpt, lm_file, tiny_corpus, capsys):
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "scripts/tune_lm.py"
    spec = importlib.util.spec_from_file_location("tune_lm", script)
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    assert tune.main(["--model", str(ckpt), "--lm", str(lm_file), "--manifest", str(tiny_corpus / "dev.jsonl"),
                      "--beams", "2", "4", "--weights", "0", "0.5", "--bonuses", "0.5", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 2 * (1 + 2)                          # per beam: no LM once, then two bonuses
    rates = [float(r.split("|")[1].strip(" %")) for r in rows]
    assert rates == sorted(rates)


def test_streaming_fuses_the_stored_lm_unless_told_not_to(ckpt, lm_file, tmp_path):
    from s2s_media.inference.streaming import StreamingConfig, StreamingRecognizer
    out = tmp_path / "with_lm.pt"
    assert main(["export", str(ckpt), str(out), "--lm", str(lm_file), "--weights", "float16"]) == 0
    rec = StreamingRecognizer(load_model_file(out))
    assert isinstance(rec.lm, LMFusion) and rec.create_stream()._search.lm is rec.lm
    off = StreamingRecognizer(load_model_file(out), StreamingConfig(lm_weight=0.0))
    assert off.lm is None and off.create_stream()._search.lm is None
    with pytest.raises(Exception, match="lm_weight"):
        StreamingConfig.from_dict({"lm_weight": -1})


@pytest.mark.parametrize("flag, value", [("--beam", "0"), ("--lm-weight", "-1")])
def test_serve_rejects_a_bad_beam_or_lm_weight_before_listening(flag, value, capsys):
    assert main(["serve", flag, value]) == 2
    assert f"error: {flag}: must be >= " in capsys.readouterr().err


def test_offline_side_of_the_streaming_comparison_uses_the_same_lm(ckpt, lm_file, tiny_corpus, tmp_path,
                                                                    monkeypatch):
    import s2s_media.inference.evaluate as evaluation
    from s2s_media.inference.pipeline import Searcher
    from s2s_media.frontend.audio import load_audio
    from s2s_media.inference.streaming import StreamingConfig, StreamingRecognizer
    out = tmp_path / "with_lm.pt"
    assert main(["export", str(ckpt), str(out), "--lm", str(lm_file), "--weights", "float16"]) == 0
    rec = StreamingRecognizer(load_model_file(out), StreamingConfig(beam=3))
    seen = []
    real = Searcher.decode_batch

    def spy(self, feats, lengths):
        seen.append((self.decode, self.lm))
        return real(self, feats, lengths)
    monkeypatch.setattr(Searcher, "decode_batch", spy)
    evaluation.offline_decode(rec, load_audio(tiny_corpus / "wav/u00.wav"))
    cfg, lm = seen[-1]
    assert lm is rec.lm and lm is not None
    assert (cfg.beam, cfg.lm_weight, cfg.token_floor, cfg.rescore_nbest) == \
        (3, rec.decode.lm_weight, rec.decode.token_floor, rec.decode.rescore_nbest)
