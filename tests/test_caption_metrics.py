"""Caption metrics against pycocoevalcap (coco-caption) on the same pre-tokenised text."""
from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer

from s2s_media.caption_metrics import (PTB_PUNCTUATION, CiderD, bleu, cider_d, meteor, meteor_unavailable,
                                       ptb_tokenize, rouge_l, score_captions)

TOL = 1e-6
VOCAB = "a man woman dog cat on the in with of riding sitting table red blue big small street near two".split()


def _corpus(seed: int, n: int = 200) -> tuple[dict[str, str], dict[str, list[str]]]:
    rng = random.Random(seed)

    def sent(lo: int = 1) -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(lo, 14)))

    refs = {f"img{i}": [sent() for _ in range(rng.randint(1, 5))] for i in range(n)}
    cands = {k: sent() for k in refs}
    cands["img0"] = refs["img0"][0]          # a perfect match
    cands["img1"] = "dog"                    # one word: no bigrams (the length quirk)
    refs["img2"] = ["a dog", "dog"]
    return cands, refs


def _coco(scorer, cands, refs):
    return scorer.compute_score(refs, {k: [v] for k, v in cands.items()})


@pytest.mark.parametrize("seed", [0, 1])
def test_bleu_matches_pycocoevalcap(seed):
    cands, refs = _corpus(seed)
    theirs, _ = Bleu(4).compute_score(refs, {k: [v] for k, v in cands.items()}, verbose=0)
    ours = bleu(cands, refs, tokenize=False)
    assert len(ours) == 4
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < TOL


def test_bleu_brevity_penalty_and_closest_length():
    # candidate length 3, reference lengths 2 and 4: ties go to the shorter (2) -> no penalty
    refs = {"a": ["x y", "x y z w"]}
    cands = {"a": "x y z"}
    theirs, _ = Bleu(4).compute_score(refs, {"a": ["x y z"]}, verbose=0)
    assert bleu(cands, refs, tokenize=False) == pytest.approx(theirs, abs=TOL)
    short = {"a": "x"}  # shorter than every reference: brevity penalty
    theirs, _ = Bleu(4).compute_score(refs, {"a": ["x"]}, verbose=0)
    ours = bleu(short, refs, tokenize=False)
    assert ours == pytest.approx(theirs, abs=TOL)
    assert ours[0] < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_l_matches_pycocoevalcap(seed):
    cands, refs = _corpus(seed)
    mean, items = _coco(Rouge(), cands, refs)
    ours, ours_items = rouge_l(cands, refs, tokenize=False)
    assert abs(ours - mean) < TOL
    assert max(abs(a - b) for a, b in zip(ours_items, items)) < TOL


@pytest.mark.parametrize("seed", [0, 1])
def test_cider_d_matches_pycocoevalcap(seed):
    cands, refs = _corpus(seed)
    mean, items = _coco(Cider(), cands, refs)
    ours, ours_items = cider_d(cands, refs, tokenize=False)
    assert abs(ours - mean) < TOL
    assert len(ours_items) == len(cands)
    assert max(abs(a - b) for a, b in zip(ours_items, items)) < TOL
    assert ours_items[0] > 1.0  # the perfect match scores high


def test_cider_d_class_scores_batches_and_pairs():
    cands, refs = _corpus(3, n=50)
    scorer = CiderD(refs, tokenize=False)
    mean, items = scorer.score(cands)
    assert (mean, items) == cider_d(cands, refs, tokenize=False)
    # per-item scores follow the candidates' order, and do not depend on the batch they come in
    keys = list(cands)[::-1][:10]
    _, sub = scorer.score({k: cands[k] for k in keys})
    assert sub == pytest.approx([items[list(cands).index(k)] for k in keys], abs=1e-12)
    # several candidates for one image as (key, caption) pairs (SCST samples)
    pairs = [("img5", cands["img5"]), ("img5", refs["img5"][0]), ("img5", "zebra zebra")]
    _, p = scorer.score(pairs)
    assert p[0] == pytest.approx(items[5], abs=1e-12)
    assert p[1] > p[0] and p[2] == 0.0
    with pytest.raises(ValueError, match="no references"):
        scorer.score({"nope": "a dog"})


def test_scorers_tokenise_raw_captions_by_default():
    refs = {"a": ["A man, riding a horse.", "A person on a HORSE!"]}
    raw = {"a": "A man on a horse."}
    tok = {"a": "a man on a horse"}
    tok_refs = {"a": ["a man riding a horse", "a person on a horse"]}
    assert cider_d(raw, refs)[0] == cider_d(tok, tok_refs, tokenize=False)[0]
    assert bleu(raw, refs) == bleu(tok, tok_refs, tokenize=False)
    assert rouge_l(raw, refs) == rouge_l(tok, tok_refs, tokenize=False)


# --------------------------------------------------------------------------- tokenisation
PTB_CASES = {  # expected outputs: Stanford PTBTokenizer 3.4.1 + coco-caption's punctuation filter
    "A man riding a wave on top of a surfboard.": "a man riding a wave on top of a surfboard",
    'Two dogs (a black one & a white one) play in the "snow"!':
        "two dogs -lrb- a black one & a white one -rrb- play in the snow",
    "The cat's toy isn't on the table; it's under the chair...":
        "the cat 's toy is n't on the table it 's under the chair",
    "A black-and-white photo of a 3.5 ft. tall statue, Mr. Smith's.":
        "a black-and-white photo of a 3.5 ft. tall statue mr. smith 's",
    "Kids are gonna play with red/blue balls -- and 10,000 marbles?":
        "kids are gon na play with red/blue balls and 10,000 marbles",
    "people cannot see the $5 price tag: it's 50% off*": "people can not see the $ 5 price tag it 's 50 % off *",
    "A sign that says 'STOP' at 5:30 p.m. in the U.S.": "a sign that says stop at 5:30 p.m. in the u.s.",
    "\u201cQuoted\u201d text with \u2018single\u2019 and isn\u2019t curly.": "quoted text with single and is n't curly",
    "a man in a t-shirt holding a can't-miss sign": "a man in a t-shirt holding a ca n't miss sign",
    "Cats, dogs,and birds:on a wire.": "cats dogs and birds on a wire",
    "A bird on a branch?!": "a bird on a branch ?!",
}


@pytest.mark.parametrize("text", list(PTB_CASES))
def test_ptb_tokenize_known_outputs(text):
    assert ptb_tokenize(text) == PTB_CASES[text]


SENTENCES = list(PTB_CASES) + [
    "A giraffe standing next to a tree in a field.", "Bathroom with a toilet, sink, and shower.",
    "The man is wearing a tie and a hat while he's smiling.", "A little girl's birthday cake, with candles!",
    "There's a \"For Sale\" sign in front of the house.", "A kitchen with wooden cabinets (and a white fridge).",
    "Two zebras; one grazing, the other looking.", "An elephant's trunk reaching for food - very cute.",
    "The dogs' bowls aren't full, they're empty.", "I'd've thought they'll come; we're here, you'd go.",
    "{curly} [square] <angle> and #hash @at", "A dog at the end. Next to a cat.", "'Twas a dark night.",
    "A room with a T.V. and a chair", "An 18-wheeler truck on I-95 at 3 p.m.", "St. Paul's cathedral, London.",
]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java to run Stanford's PTBTokenizer")
def test_ptb_tokenize_agrees_with_stanford_ptbtokenizer(tmp_path):
    jar_dir = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES) + "\n")
    out = subprocess.run(["java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
                          "-preserveLines", "-lowerCase", str(src)], cwd=jar_dir, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split("\n")
    for sentence, line in zip(SENTENCES, out):
        theirs = " ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATION)
        assert ptb_tokenize(sentence) == theirs, sentence


# --------------------------------------------------------------------------- score_captions and METEOR
def test_score_captions_reports_every_metric():
    refs = {"a": ["a man riding a horse", "a person on a horse"], "b": ["two dogs play in the snow"]}
    cands = {"a": "A man on a horse.", "b": "Two dogs in the snow!"}
    out = score_captions(cands, refs, use_meteor=False)
    assert set(out) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert 0 < out["BLEU-4"] < out["BLEU-1"] <= 1
    perfect = score_captions({"a": refs["a"][0], "b": refs["b"][0]}, refs, use_meteor=False)
    assert perfect["BLEU-4"] == pytest.approx(1.0) and perfect["ROUGE-L"] == pytest.approx(1.0)
    assert perfect["CIDEr-D"] > out["CIDEr-D"]


def test_score_captions_notes_missing_meteor(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = score_captions({"a": "a dog"}, {"a": ["a dog"]})
    assert "METEOR" not in out and "java" in out["notes"][0]


@pytest.mark.skipif(os.environ.get("S2S_TEST_METEOR") != "1" or meteor_unavailable() is not None,
                    reason="METEOR starts a JVM that loads a paraphrase table (~15 s); set S2S_TEST_METEOR=1 "
                           "with java present")
def test_meteor_matches_pycocoevalcap():
    refs = {"a": ["a man riding a horse", "a person on a horse"], "b": ["two dogs play in the snow", "dogs in snow"],
            "c": ["a red bus on the street"]}
    cands = {"a": "a man on a horse", "b": "a dog in the snow", "c": "a bus"}
    # pycocoevalcap 1.2's Meteor().compute_score on the same input gives 0.3250272372633292
    assert meteor(cands, refs, tokenize=False) == pytest.approx(0.3250272372633292, abs=TOL)
