"""German, Russian and Chinese Common Voice folders, from prepare to a tokenizer to a few training steps.

The fixtures are laid out like a Common Voice release (``clips/*.mp3`` + ``train/dev/test.tsv`` with the
v17 columns); the audio is tones, since only the path through the toolkit is under test here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_make import TINY_MODEL, make_commonvoice  # noqa: E402

from s2s_media.cli.main import main  # noqa: E402
from s2s_media.checkpoint_io import load_checkpoint, save_checkpoint  # noqa: E402
from s2s_media.config import load_config  # noqa: E402
from s2s_media.data.manifest import read_manifest  # noqa: E402
from s2s_media.data.preparers import prepare_commonvoice  # noqa: E402
from s2s_media.errors import UserError  # noqa: E402
from s2s_media.inference.checkpoint import bundled_model_path, load_model_file  # noqa: E402
from s2s_media.training.run import run_training, save_tokenizer, tokenizer_path, train_tokenizer, training_texts  # noqa: E402

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"

SENTENCES = {
    "de": ["Größe straße", "Die Straße ist 3 Kilometer lang.", "„Über den Fluss“, sagte er — schnell!",
           "Äpfel, Birnen und Öl.", "Wie geht's dir heute?"],
    "ru": ["Привет мир", "Ёлки-палки, это 5 рублей!", "«Съешь же ещё этих мягких булок»",
           "Москва — столица России.", "Как дела?"],
    "zh-CN": ["你好世界", "今天天气很好。", "我有3个苹果，你呢？", "我用 iPhone 手机。", "北京是中国的首都。"],
}
EXPECTED_FIRST = {"de": "größe straße", "ru": "привет мир", "zh-CN": "你好世界"}
PER_SPLIT = {"train": 5, "dev": 2, "test": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """``{language: folder of train/dev/test.jsonl}`` prepared from a Common Voice folder per language."""
    out = {}
    for lang, sentences in SENTENCES.items():
        root = tmp_path_factory.mktemp(f"cv_{lang}")
        corpus = make_commonvoice(root, PER_SPLIT, lang=lang, sentences=sentences)
        prepare_commonvoice(corpus.root, root / "data")             # language from the folder's name
        out[lang] = root / "data"
    return out


@pytest.mark.parametrize("lang", list(SENTENCES))
def test_prepare_marks_language_and_keeps_the_script(corpora, lang):
    records = read_manifest(corpora[lang] / "train.jsonl")
    assert len(records) == PER_SPLIT["train"]
    assert {r.language for r in records} == {lang}
    assert records[0].text == EXPECTED_FIRST[lang]
    with_digits = {r.text for r in records if r.digits}
    assert with_digits and all(any(c.isdigit() for c in t) for t in with_digits)       # "digits": true marks them
    assert all(not r.digits for r in records if not any(c.isdigit() for c in r.text))
    raw = json.loads((corpora[lang] / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert raw["language"] == lang and "digits" not in raw


def test_language_flag_when_the_folder_is_not_named_after_one(tmp_path, caplog):
    corpus = make_commonvoice(tmp_path, {"train": 2}, lang="ru_fixture", sentences=["Привет мир", "Как дела?"])
    with pytest.raises(UserError, match="no usable utterances"):        # English rules: Cyrillic is dropped
        prepare_commonvoice(corpus.root, tmp_path / "en")
    assert "give the corpus's language (commonvoice --language)" in caplog.text
    assert main(["prepare", "commonvoice", str(corpus.root), str(tmp_path / "ru"), "--language", "ru"]) == 0
    russian = read_manifest(tmp_path / "ru" / "train.jsonl")
    assert [r.text for r in russian] == ["привет мир", "как дела"]
    assert [r.language for r in russian] == ["ru", "ru"]


def _config(corpora: dict[str, Path], lang: str, exp: Path, kind: str):
    data = corpora[lang]
    return load_config(CONF, TINY_MODEL + [
        f"tokenizer.kind={kind}", "tokenizer.vocab_size=40", f"tokenizer.language={lang}",
        f"data.train={data / 'train.jsonl'}", f"data.dev={data / 'dev.jsonl'}", f"train.exp_dir={exp}",
        "train.epochs=1", "train.max_steps=2", "data.min_duration=0.1"])


KINDS = {"de": "char", "ru": "char", "zh-CN": "sentencepiece"}


@pytest.fixture(scope="module")
def trained(corpora, tmp_path_factory) -> dict[str, Path]:
    """``{language: exp dir}``: the tokenizer stage, then two training steps, once per language."""
    exps = {}
    for lang, kind in KINDS.items():
        exps[lang] = tmp_path_factory.mktemp(f"exp_{lang}")
        cfg = _config(corpora, lang, exps[lang], kind)
        save_tokenizer(train_tokenizer(cfg, training_texts(cfg)), tokenizer_path(cfg))
        assert run_training(cfg).step == 2
    return exps


@pytest.mark.parametrize("lang", list(KINDS))
def test_tokenizer_and_training_steps(corpora, trained, lang):
    cfg = _config(corpora, lang, trained[lang], KINDS[lang])
    texts = training_texts(cfg)
    assert EXPECTED_FIRST[lang] in texts
    tok = load_model_file(trained[lang] / "last.pt").tokenizer
    assert tok.kind == KINDS[lang]
    for t in texts:                                   # every training text survives the round trip
        assert 1 not in tok.encode(t) and tok.decode(tok.encode(t)) == t
    ckpt = load_checkpoint(trained[lang] / "last.pt")
    assert ckpt["config"]["tokenizer"]["language"] == lang
    assert load_model_file(trained[lang] / "last.pt").config.tokenizer.language == lang


@pytest.fixture(scope="module")
def zh_model(trained) -> Path:
    return trained["zh-CN"] / "last.pt"


def test_evaluate_reports_cer_first_for_chinese(corpora, zh_model, tmp_path, capsys):
    code = main(["evaluate", "--model", str(zh_model), "--manifest", str(corpora["zh-CN"] / "test.jsonl"),
                 "--decoding", "ctc_greedy", "--out", str(tmp_path / "dec")])
    out = capsys.readouterr().out
    assert code == 0
    assert "ctc_greedy       CER" in out and "CER is the headline figure" in out
    scores = json.loads((tmp_path / "dec" / "scores.json").read_text())
    assert scores["language"] == "zh-CN" and scores["headline"] == "cer"
    chars = sum(len(r.text) for r in read_manifest(corpora["zh-CN"] / "test.jsonl"))
    assert scores["scores"]["ctc_greedy"]["chars"] == chars          # spaces are not counted in Chinese


def test_a_model_refuses_a_manifest_in_another_language(corpora, zh_model, tmp_path, capsys):
    code = main(["evaluate", "--model", str(zh_model), "--manifest", str(corpora["ru"] / "test.jsonl"),
                 "--decoding", "ctc_greedy", "--out", str(tmp_path / "dec")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "is marked language 'ru' but the model is for 'zh-CN'" in err and "test.jsonl" in err
    code = main(["train", str(CONF), "--set", "tokenizer.language=de", "--set", f"data.train={corpora['ru'] / 'train.jsonl'}",
                 "--set", f"data.dev={corpora['ru'] / 'dev.jsonl'}", "--set", f"train.exp_dir={tmp_path / 'exp2'}"])
    assert code == 2 and "marked language 'ru' but the model is for 'de'" in capsys.readouterr().err


def test_old_checkpoints_without_a_language_load_as_english(tmp_path):
    """Checkpoints written before ``tokenizer.language`` existed (the bundled model of sessions 1-7) are English."""
    ckpt = load_checkpoint(bundled_model_path("asr"))
    assert ckpt["config"]["tokenizer"].pop("language") == "en"
    old = save_checkpoint(ckpt, tmp_path / "old.pt")
    assert load_model_file(old).config.tokenizer.language == "en"
