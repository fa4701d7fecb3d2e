"""Training a language model from text (``s2s-media lm``); LM files are :mod:`s2s_media.lm.files`.

Text comes from the same sources as the synthetic speech corpus: ``fortunes`` (the Debian
package) or UTF-8 files with one or more sentences per line (LibriSpeech's LM corpus, a dump of
Common Voice sentences, ...). Sentences are normalised exactly as transcripts are, and sentences
of held-out manifests can be excluded so that a test set stays unseen by the LM as well.

An LM file is a plain dict (``torch.load(weights_only=True)``): ``version``, ``kind``,
``lm`` (:meth:`NgramLM.to_dict`), ``tokenizer`` (the dict of the tokenizer it was trained with)
and ``meta``. ``s2s-media export --lm`` stores its ``lm`` entry inside a model checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from s2s_media.data.manifest import read_manifest
from s2s_media.data.synthetic_speech import source_paragraphs, split_sentences
from s2s_media.errors import UserError
from s2s_media.lm.files import save_lm_file  # noqa: F401 - s2s-media lm writes what it trains with it
from s2s_media.lm.ngram import NgramLM
from s2s_media.progress import progress_bar
from s2s_media.text.normalize import normalize_text
from s2s_media.text.tokenizer import EOS, SOS, Tokenizer


def lm_sentences(sources: Iterable[str], exclude: Iterable[str] = (), language: str = "en") -> Iterator[str]:
    """Sentences of ``sources`` normalised by ``language``, de-duplicated, that do not overlap ``exclude``.

    exclude: normalised held-out texts. A sentence is dropped when it contains one of them or is
    contained in one (as whole words): quotes recur inside longer ones in real text collections.
    """
    held_out = WordSpans(exclude)
    seen: set[str] = set()
    for source in sources:
        for paragraph in source_paragraphs(source):
            for raw in split_sentences(paragraph):
                text = normalize_text(raw, language)
                if text and text not in seen and not held_out.overlaps(text):
                    seen.add(text)
                    yield text


class WordSpans:
    """Whole-word containment, either way, between a text and a set of texts."""

    def __init__(self, texts: Iterable[str]):
        self.by_first: dict[str, list[list[str]]] = {}
        self.spans: set[tuple[str, ...]] = set()          # every word span of every text
        for words in (t.split() for t in set(texts) if t):
            self.by_first.setdefault(words[0], []).append(words)
            for i in range(len(words)):
                for j in range(i + 1, len(words) + 1):
                    self.spans.add(tuple(words[i:j]))

    def overlaps(self, text: str) -> bool:
        words = text.split()
        if tuple(words) in self.spans:                      # inside a held-out text
            return True
        for i, w in enumerate(words):                       # a held-out text inside it
            for held in self.by_first.get(w, ()):
                if words[i:i + len(held)] == held:
                    return True
        return False


def manifest_texts(paths: Iterable[str | Path], language: str = "en") -> set[str]:
    """The transcripts of audio manifests normalised by ``language`` (to keep them out of LM training text)."""
    return {normalize_text(r.text, language) for p in paths for r in read_manifest(p)}


def train_lm(sources: Iterable[str], tokenizer: Tokenizer, order: int = 6, exclude: Iterable[str | Path] = (),
             prune: int = 1, language: str = "en") -> tuple[NgramLM, dict]:
    """An n-gram over ``tokenizer``'s ids from the text of ``sources`` normalised by ``language`` (the
    model's ``tokenizer.language``); returns ``(lm, stats)``."""
    held_out = manifest_texts(exclude, language)
    seqs, words = [], 0
    for text in progress_bar(lm_sentences(sources, held_out, language), desc="reading text", unit=" sentences"):
        ids = tokenizer.encode(text)
        if ids:
            seqs.append(ids)
            words += len(text.split())
    if not seqs:
        raise UserError(f"{', '.join(sources)}: no sentences to train a language model on")
    lm = NgramLM.train(seqs, order, tokenizer.vocab_size, bos=SOS, eos=EOS, prune=prune)
    stats = {"sentences": len(seqs), "words": words, "tokens": sum(len(s) for s in seqs),
             "ngrams": lm.num_ngrams, "order": order, "excluded_sentences": len(held_out)}
    return lm, stats
