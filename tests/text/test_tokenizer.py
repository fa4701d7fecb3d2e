"""Char, word and SentencePiece tokenizers: round trips, reserved ids, task tokens, serialisation."""
import io

import pytest
import torch

from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import (BLANK, EOS, SOS, SPECIALS, UNK, CharTokenizer, SentencePieceTokenizer,
                                      WordTokenizer, task_prefix, tokenizer_from_dict)

RAW = [
    "The quick brown fox jumps over the lazy dog.",
    "Don't stop me now, I'm having such a good time!",
    "In 1984 there were 21 birds on the 2nd wire.",
    "She sells sea shells by the sea shore.",
    "A café in Zürich serves naïve crêpes.",
    "Jack's 3 quiet zebras vexed my big wolf.",
]
TEXTS = [normalize_text(t) for t in RAW]


def _train(kind: str, tasks=()):
    if kind == "char":
        return CharTokenizer.train(TEXTS, tasks=tasks)
    if kind == "word":
        return WordTokenizer.train(TEXTS, tasks=tasks)
    if kind == "bpe":
        return SentencePieceTokenizer.train(TEXTS * 3, vocab_size=60, model_type="bpe", tasks=tasks)
    return SentencePieceTokenizer.train(TEXTS * 3, vocab_size=60, model_type="unigram", tasks=tasks)


KINDS = ["char", "word", "bpe", "unigram"]


@pytest.fixture(scope="module", params=KINDS)
def tok(request):
    return _train(request.param, tasks=["asr", "caption"])


def test_round_trip_on_normalised_text(tok):
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids and UNK not in ids
        assert all(tok.num_reserved <= i < tok.vocab_size for i in ids)   # no special or task ids
        assert tok.decode(ids) == text


def test_reserved_ids_come_first(tok):
    assert (BLANK, UNK, SOS, EOS) == (0, 1, 2, 3)
    assert tok.itos[:4] == SPECIALS == ["<blank>", "<unk>", "<sos>", "<eos>"]
    assert tok.itos[4:6] == ["<asr>", "<caption>"]
    assert tok.num_reserved == 6
    assert tok.vocab_size == len(tok.itos) == len(tok.stoi)          # every unit is distinct
    assert not any(u in SPECIALS for u in tok.itos[6:])


def test_decode_drops_special_and_task_ids(tok):
    ids = tok.encode(TEXTS[0])
    assert tok.decode([SOS, tok.task_id("asr")] + ids + [EOS, BLANK, UNK]) == TEXTS[0]


def test_unknown_units_map_to_unk():
    char = _train("char")
    assert char.encode("a#b") == [char.stoi["a"], UNK, char.stoi["b"]]
    word = _train("word")
    assert word.encode("the xylophone") == [word.stoi["the"], UNK]
    bpe = _train("bpe")
    assert bpe.encode("the #")[-1] == UNK


def test_char_units_and_space_symbol():
    char = _train("char")
    assert "▁" in char.stoi and " " not in char.stoi
    assert char.encode("a b") == [char.stoi["a"], char.stoi["▁"], char.stoi["b"]]


def test_task_tokens_and_prefix():
    tok = _train("char", tasks=["asr", "caption"])
    assert tok.task_id("asr") == 4 and tok.task_id("caption") == 5
    assert tok.prefix() == [SOS, 4]                     # the first task is the default
    assert tok.prefix("caption") == [SOS, 5]
    with pytest.raises(KeyError, match="translate"):
        tok.prefix("translate")
    plain = _train("char")
    assert plain.prefix() == [SOS] and plain.num_reserved == 4
    assert plain.itos[4] != "<asr>"
    # task tokens shift the unit ids but not what they mean
    assert [tok.itos[i] for i in tok.encode(TEXTS[1])] == [plain.itos[i] for i in plain.encode(TEXTS[1])]


def test_task_prefix_is_the_one_choice_of_start_sequence():
    both, plain, captions = _train("char", tasks=["asr", "caption"]), _train("char"), _train("char", tasks=["caption"])
    assert task_prefix(both, "asr") == [SOS, 4] and task_prefix(both, "caption") == [SOS, 5]
    assert task_prefix(plain, "asr") == [SOS]                  # a single-task speech model has no task token
    assert task_prefix(captions, "asr") == captions.prefix()   # as prefix(None): the tokenizer's first task
    with pytest.raises(KeyError, match="caption"):
        task_prefix(_train("char", tasks=["asr"]), "caption")   # a speech model asked to caption


def test_sentencepiece_respects_vocab_size():
    bpe = _train("bpe")
    assert bpe.vocab_size <= 60 + len(SPECIALS)
    assert bpe.vocab_size > 30
    # BPE merges: the pieces are shorter than the characters
    assert len(bpe.encode(TEXTS[0])) < len(TEXTS[0])


def test_to_dict_rebuilds_identical_ids(tok):
    again = tokenizer_from_dict(tok.to_dict())
    assert type(again) is type(tok)
    assert again.itos == tok.itos and again.tasks == tok.tasks
    for text in TEXTS:
        assert again.encode(text) == tok.encode(text)
    assert again.prefix("caption") == tok.prefix("caption")


def test_dict_survives_weights_only_torch_load(tok):
    buf = io.BytesIO()
    torch.save({"tokenizer": tok.to_dict()}, buf)
    buf.seek(0)
    d = torch.load(buf, weights_only=True)["tokenizer"]
    again = tokenizer_from_dict(d)
    assert again.itos == tok.itos
    assert [again.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "bytes", "units": []})
