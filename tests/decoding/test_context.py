"""Hotwords (context graph) and phrase grammars: the automata, and both prefix searches with them."""
import math

import pytest
import torch

from s2s_media.decoding.context import (DEFAULT_BOOST, ContextGraph, Hotword, UNK_PHRASE, as_hotwords,
                                        compile_grammar, compile_hotwords, read_hotwords, render_grammar_words)
from s2s_media.decoding.ctc import ctc_prefix_beam_search
from s2s_media.decoding.native import NativeCTCSearch
from s2s_media.errors import UserError
from s2s_media.text.tokenizer import CharTokenizer, WordTokenizer
from tests.decoding.test_ctc import brute_force, peaky

SEP = 9   # the word separator in the hand-built graphs below


def run(graph, tokens):
    """Total context score of a whole hypothesis: every step, then the end."""
    state, total = graph.start, 0.0
    for u in tokens:
        state, score = graph.step(state, u)
        total += score
    return total + graph.final(state)


def test_graph_keeps_a_full_match_and_gives_back_a_partial_one():
    g = ContextGraph([([4, 5, 6], 2.0)], boundary=SEP)
    assert run(g, [4, 5, 6]) == pytest.approx(6.0)                    # the whole phrase
    assert run(g, [7, SEP, 4, 5, 6, SEP, 7]) == pytest.approx(6.0)    # as a word among others
    assert run(g, [4, 5]) == pytest.approx(0.0)                       # stops half-way: nothing kept
    assert run(g, [4, 5, 7]) == pytest.approx(0.0)                    # fails half-way
    assert run(g, [4, 5, 6, 7]) == pytest.approx(0.0)                 # a longer word: not the hotword
    assert run(g, [7, 4, 5, 6]) == pytest.approx(0.0)                 # inside a word: not the hotword
    assert run(g, [4, 5, 6, SEP, 4, 5, 6]) == pytest.approx(12.0)     # twice
    # on the way in, each token earns its boost, and a failure takes it back at once
    s, b1 = g.step(g.start, 4)
    s, b2 = g.step(s, 5)
    _, back = g.step(s, 7)
    assert (b1, b2, back) == (pytest.approx(2.0), pytest.approx(2.0), pytest.approx(-4.0))


def test_graph_overlapping_phrases_fall_back_to_the_longest_live_match():
    # "4 5 4 6" fails "4 5 4 5" at its last token but "4 6" still starts there? no: boundary-less here
    g = ContextGraph([([4, 5, 4, 5], 1.0), ([4, 6], 3.0)])
    assert run(g, [4, 5, 4, 6]) == pytest.approx(6.0)     # the second phrase, found after the first failed
    assert run(g, [4, 5, 4, 5]) == pytest.approx(4.0)
    assert run(g, [5, 5, 4]) == pytest.approx(0.0)


def brute_best(lp, graph):
    """Argmax over every label sequence of log P_ctc(labels) + context score."""
    total, _ = brute_force(lp)
    scored = {k: math.log(p) + run(graph, list(k)) for k, p in total.items() if p > 0}
    return max(scored, key=scored.get), scored


@pytest.mark.parametrize("seed", range(5))
def test_python_and_native_searches_rank_by_ctc_plus_context_exactly(seed):
    lp = peaky(6, 4, seed, blank_frac=0.3).double()
    total, _ = brute_force(lp)
    # the hotword: the second best label sequence without biasing, so the boost has to move it up
    ranked = sorted(total, key=total.get, reverse=True)
    target = next(k for k in ranked[1:] if len(k) >= 2)
    graph = ContextGraph([(list(target), 4.0)])
    top, scored = brute_best(lp, graph)
    hyps = ctc_prefix_beam_search(lp, beam=2000, blank_skip=None, context=graph)
    assert tuple(hyps[0].tokens) == top
    assert hyps[0].total == pytest.approx(scored[top], abs=1e-6)
    assert hyps[0].context_score == pytest.approx(run(graph, list(top)))
    native = NativeCTCSearch(4, beam=2000, blank_skip=None, context=graph)
    native.advance(lp)
    nb = native.nbest()
    assert tuple(nb[0].tokens) == top
    assert nb[0].total == pytest.approx(scored[top], abs=1e-4)


def test_no_context_changes_nothing():
    lp = peaky(40, 6, 3)
    plain = ctc_prefix_beam_search(lp, beam=8)
    assert all(h.context_score == 0.0 for h in plain)
    graph = ContextGraph([([7, 7], 2.0)])          # a phrase of ids the model never emits: no change either
    biased = ctc_prefix_beam_search(lp, beam=8, context=graph)
    assert [h.tokens for h in biased] == [h.tokens for h in plain]


def test_grammar_allows_only_listed_phrases_and_unk():
    tok = CharTokenizer.train(["yes no zero one two"])
    g = compile_grammar(tok, ["yes", "no", "one two"], max_phrases=10).context
    ids = tok.encode
    assert run(g, ids("yes")) == 0.0
    assert run(g, ids("no yes")) == 0.0
    assert run(g, ids("one two")) == 0.0
    assert run(g, ids("one")) == -math.inf             # half a phrase
    assert run(g, ids("yo")) == -math.inf
    assert run(g, ids("zero")) == -math.inf
    with_unk = compile_grammar(tok, ["yes", "no", UNK_PHRASE]).context
    assert run(with_unk, ids("zero yes")) == 0.0         # any other word, then a phrase
    assert render_grammar_words("zero yes".split(), ["yes", "no"]) == [UNK_PHRASE, "yes"]
    assert render_grammar_words("one two one".split(), ["one two"]) == ["one", "two", UNK_PHRASE]


def test_grammar_search_returns_a_phrase_even_when_the_audio_says_otherwise():
    tok = CharTokenizer.train(["abc c"])
    a, b, c = tok.encode("abc")
    # the acoustics say "ab" clearly and "c" a little; the grammar only knows "abc" and "c"
    rows = torch.full((6, tok.vocab_size), 1e-4, dtype=torch.float64)
    for t, (u, p) in enumerate([(a, .9), (0, .9), (b, .9), (0, .9), (c, .2), (0, .9)]):
        rows[t, u] = p
        rows[t, 0] = max(rows[t, 0].item(), 1 - p)
    lp = (rows / rows.sum(-1, keepdim=True)).log()
    free = ctc_prefix_beam_search(lp, beam=16, blank_skip=None)
    assert free[0].tokens == [a, b]
    grammar = compile_grammar(tok, ["abc", "c"]).context
    hyps = ctc_prefix_beam_search(lp, beam=16, blank_skip=None, context=grammar)
    assert hyps[0].tokens == [a, b, c]
    assert all(set(tok.decode(h.tokens).split()) <= {"abc", "c"} for h in hyps)   # phrases only (or nothing)
    native = NativeCTCSearch(tok.vocab_size, beam=16, blank_skip=None, context=grammar)
    native.advance(lp)
    assert native.nbest()[0].tokens == hyps[0].tokens


def test_compile_hotwords_reports_characters_outside_the_vocabulary_by_name():
    tok = CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz'"])
    out = compile_hotwords(tok, [Hotword("Kubernetes", 3.0), Hotword("你好"), Hotword("Zoë")])
    assert out.phrases == ["kubernetes", "zoe"]
    assert len(out.skipped) == 1
    assert "'你' (CJK UNIFIED IDEOGRAPH-4F60)" in out.skipped[0] and "'你好'" in out.skipped[0]
    g = out.context
    assert run(g, tok.encode("kubernetes")) == pytest.approx(30.0)
    assert run(g, tok.encode("zoe")) == pytest.approx(3 * DEFAULT_BOOST)
    # a Russian model knows Cyrillic; an English one does not
    ru = CharTokenizer.train(["привет мир"])
    assert compile_hotwords(ru, [Hotword("Привет")], language="ru").phrases == ["привет"]
    words = WordTokenizer.train(["hello world"])
    skipped = compile_hotwords(words, [Hotword("hello there")]).skipped
    assert skipped and "there" in skipped[0]


def test_empty_and_oversized_lists_are_errors():
    tok = CharTokenizer.train(["ab"])
    with pytest.raises(UserError, match="empty"):
        compile_hotwords(tok, [])
    with pytest.raises(UserError, match="over the limit of 2"):
        compile_hotwords(tok, [Hotword("a"), Hotword("b"), Hotword("ab")], max_hotwords=2)
    with pytest.raises(UserError, match="phrase_list: the list is empty"):
        compile_grammar(tok, [])


def test_parsing_hotwords(tmp_path):
    assert Hotword.parse("Kubernetes:3.0") == Hotword("Kubernetes", 3.0)
    assert Hotword.parse("New York") == Hotword("New York")
    assert Hotword.parse("ratio 16:9") == Hotword("ratio 16", 9.0)   # a number after the last colon is the boost
    assert Hotword.parse("key: value") == Hotword("key: value")
    with pytest.raises(UserError, match="empty"):
        Hotword.parse(":2")
    with pytest.raises(UserError, match="finite"):
        Hotword.parse("x:inf")
    f = tmp_path / "hot.txt"
    f.write_text("# names\nKubernetes:3\n\n  Ada Lovelace \n")
    assert read_hotwords(f) == [Hotword("Kubernetes", 3.0), Hotword("Ada Lovelace")]
    with pytest.raises(UserError, match="cannot read"):
        read_hotwords(tmp_path / "missing.txt")
    assert as_hotwords(["a:1", ("b", 2), Hotword("c")]) == [Hotword("a", 1.0), Hotword("b", 2.0), Hotword("c")]
