"""Caption metrics as the COCO caption evaluation computes them: BLEU-1..4, ROUGE-L, CIDEr-D, METEOR.

The numbers match pycocoevalcap (the pip package of coco-caption) on the same tokenised text:

- **BLEU-1..4** (:func:`bleu`): corpus-level (clipped n-gram matches and candidate n-grams summed
  over all images), the effective reference length of an image being the reference length
  *closest* to the candidate's (the shorter one on a tie), one brevity penalty for the corpus.
  Like pycocoevalcap, every ratio carries its ``1e-15 / 1e-9`` smoothing.
- **ROUGE-L** (:func:`rouge_l`): per image the longest common subsequence with each reference,
  precision and recall each maximised over references, F-measure with ``beta = 1.2``; averaged.
- **CIDEr-D** (:class:`CiderD`, :func:`cider_d`): n = 1..4, tf-idf vectors with document
  frequencies taken from the references (an n-gram's df = the number of *images* whose references
  contain it, ``idf = log(N_images) - log(max(1, df))``), hypothesis weights clipped to the
  reference's, a Gaussian length penalty ``exp(-delta^2 / (2 * 6^2))``, the cosine similarities
  averaged over n and over references, times 10. As in coco-caption, ``delta`` is the difference
  in *bigram* counts (its ``length`` counter counts 2-grams), which equals the word-length
  difference except where a caption has fewer than two words.
- **METEOR** (:func:`meteor`): the Meteor 1.5 jar that pycocoevalcap ships, run with ``java``
  (``-l en -norm``), fed exactly as pycocoevalcap feeds it. Available only when both ``java`` and
  the pycocoevalcap package are installed (:func:`meteor_unavailable` says why not); otherwise
  :func:`score_captions` leaves it out with a note. Every other metric is pure Python.

Tokenisation. coco-caption first runs Stanford CoreNLP's PTBTokenizer (``-preserveLines
-lowerCase``, a Java program) and then deletes the tokens ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- .
? ! , : - -- ... ;``. :func:`ptb_tokenize` is a Python equivalent of that pipeline for caption
text: it lowercases; splits ``, ; : ? !`` (runs of ``?``/``!`` stay one token), quotes, brackets,
``$ % * &``-free symbols and ``--``/``...`` off words (keeping ``10,000``, ``5:30``, ``3.5``,
``t-shirt``, ``red/blue``); splits clitics (``isn't`` -> ``is n't``, ``can't`` -> ``ca n't``,
``dog's`` -> ``dog 's``, ``cannot`` -> ``can not``, ``gonna`` -> ``gon na``); splits a word's final
period unless the word is an abbreviation (``u.s.``, ``p.m.``, ``mr.``, ``ft.``...); maps curly
quotes to straight ones; then deletes the same punctuation tokens. Brackets become ``-lrb-``,
``-rrb-``, ``-lsb-``, ``-rsb-``, ``-lcb-``, ``-rcb-`` and are **kept**: PTBTokenizer lowercases
them too, so coco-caption's (upper-case) ``-LRB-`` entries never match. Known differences from
the Java tokenizer are limited to rare constructions (unlisted abbreviations such as ``approx.``,
emoticons, URLs, e-mail addresses). ``tests/captioning`` checks the two agree on caption-like
sentences whenever ``java`` is present.

All public scorers take raw captions and tokenise them (``tokenize=False`` when they already are
tokenised, lower-case, single-spaced). ``candidates`` maps an image key to one caption;
``references`` maps every candidate key to its list of reference captions.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import util as importlib_util
from pathlib import Path

from s2s_media.errors import UserError

Candidates = Mapping[str, str]
References = Mapping[str, Sequence[str]]

# --------------------------------------------------------------------------- tokenisation
PTB_PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                             ".", "?", "!", ",", ":", "-", "--", "...", ";"])  # coco-caption's list, verbatim
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CURLY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
                "wanna": ["wan", "na"], "gimme": ["gim", "me"], "lemme": ["lem", "me"]}
_T_WORDS = {"'twas": "was", "'tis": "is"}
_ABBREVIATIONS = frozenset("""mr mrs ms dr st ft jr sr vs etc inc co ltd mt prof gen gov sen rep capt lt col
    sgt ave blvd rd jan feb mar apr jun jul aug sep sept oct nov dec""".split())
_ACRONYM = re.compile(r"^(?:[a-z0-9]+\.)*[a-z]\.$|^[a-z]+\.(?:[a-z]+\.)+$")
# characters split off as tokens of their own, wherever they are
_ALWAYS = re.compile(r"(\.\.\.|--|;|[?!]+|\$|%|\*|\(|\)|\[|\]|\{|\})")
# , and : split off unless between digits (10,000  5:30)
_COMMA_COLON = re.compile(r"(?<!\d)([,:])|([,:])(?!\d)")


def _split_clitics(word: str) -> list[str]:
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    for c in _CLITICS:
        if word.endswith(c) and len(word) > len(c):
            return _split_clitics(word[: -len(c)]) + [c]
    return [word]


def _word_tokens(chunk: str) -> list[str]:
    """One whitespace-delimited chunk (``, ; : ? !`` etc. already split off) -> PTB tokens: leading and
    trailing quotes, a final period unless the word is an abbreviation, clitics."""
    if chunk in _T_WORDS:  # 'twas, 'tis
        return ["'t", _T_WORDS[chunk]]
    head: list[str] = []
    tail: list[str] = []
    while chunk and chunk[0] in "\"'`" and chunk not in _CLITICS:
        n = 2 if chunk[:2] in ("``", "''") else 1
        head.append("``" if chunk[0] == '"' or n == 2 else "`")
        chunk = chunk[n:]
    while chunk and chunk not in _CLITICS:
        if chunk.endswith(("\"", "''")) or (chunk[-1] == "'" and not chunk.endswith("n'")):
            n = 2 if chunk.endswith("''") else 1
            tail.insert(0, "'" if chunk[-1] == "'" and n == 1 else "''")
            chunk = chunk[:-n]
        elif (chunk.endswith(".") and chunk != "." and not _ACRONYM.match(chunk)
              and chunk[:-1] not in _ABBREVIATIONS):
            tail.insert(0, ".")
            chunk = chunk[:-1]
        else:
            break
    if not _is_dash_split(chunk):
        return head + (_split_clitics(chunk) if chunk else []) + tail
    parts: list[str] = []
    for i, piece in enumerate(chunk.split("-")):
        if i:
            parts.append("-")
        if piece:
            parts += _split_clitics(piece)
    return head + parts + tail


def _is_dash_split(chunk: str) -> bool:
    """``can't-miss``: PTB splits a hyphen next to a clitic; ordinary hyphenated words stay whole."""
    return "-" in chunk and any(c in chunk for c in ("n't-", "'s-", "'re-", "'ve-", "'ll-", "'d-", "'m-"))


def ptb_tokenize(text: str) -> str:
    """A caption -> lower-case tokens joined by single spaces, punctuation removed, as coco-caption's
    PTBTokenizer + punctuation filter give it (see the module docstring for the rules)."""
    text = text.translate(_CURLY).replace("\n", " ").lower()
    text = _ALWAYS.sub(r" \1 ", text)
    text = _COMMA_COLON.sub(lambda m: f" {m.group(1) or m.group(2)} ", text)
    tokens: list[str] = []
    for chunk in text.split():
        if chunk in _BRACKETS:
            tokens.append(_BRACKETS[chunk])
        elif _ALWAYS.fullmatch(chunk) or chunk in (",", ":"):
            tokens.append(chunk)
        else:
            tokens += _word_tokens(chunk)
    return " ".join(t for t in tokens if t not in PTB_PUNCTUATION)


def _prepare(candidates: Candidates | Iterable[tuple[str, str]], references: References,
             tokenize: bool) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """-> (keys, candidate texts, references of those keys), tokenised when asked. Checks the inputs."""
    pairs = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
    if not pairs:
        raise ValueError("no candidate captions to score")
    tok = ptb_tokenize if tokenize else (lambda s: s)
    keys = [k for k, _ in pairs]
    refs: dict[str, list[str]] = {}
    for k in keys:
        if k in refs:
            continue
        if k not in references:
            raise ValueError(f"candidate {k!r} has no references")
        if not references[k]:
            raise ValueError(f"image {k!r} has an empty list of references")
        refs[k] = [tok(r) for r in references[k]]
    return keys, [tok(c) for _, c in pairs], refs


def _ngram_counts(words: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            g = tuple(words[i:i + k])
            counts[g] = counts.get(g, 0) + 1
    return counts


# --------------------------------------------------------------------------- BLEU
def bleu(candidates: Candidates, references: References, n: int = 4, tokenize: bool = True) -> list[float]:
    """Corpus BLEU-1..``n`` (a list of ``n`` floats in [0, 1]); see the module docstring."""
    keys, cands, refs = _prepare(candidates, references, tokenize)
    small, tiny = 1e-9, 1e-15
    correct, guess = [0] * n, [0] * n
    test_len = ref_len = 0
    for key, cand in zip(keys, cands):
        words = cand.split()
        max_counts: dict[tuple[str, ...], int] = {}
        lengths = []
        for r in refs[key]:
            rw = r.split()
            lengths.append(len(rw))
            for g, c in _ngram_counts(rw, n).items():
                if c > max_counts.get(g, 0):
                    max_counts[g] = c
        tl = len(words)
        test_len += tl
        ref_len += min((abs(length - tl), length) for length in lengths)[1]
        for g, c in _ngram_counts(words, n).items():
            correct[len(g) - 1] += min(max_counts.get(g, 0), c)
        for k in range(n):
            guess[k] += max(0, tl - k)
    scores, prod = [], 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(prod ** (1.0 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# --------------------------------------------------------------------------- ROUGE-L
def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidates: Candidates, references: References, beta: float = 1.2,
            tokenize: bool = True) -> tuple[float, list[float]]:
    """ROUGE-L F-measure: (mean over images, per image in candidate order)."""
    keys, cands, refs = _prepare(candidates, references, tokenize)
    per_item = []
    for key, cand in zip(keys, cands):
        c = cand.split(" ")  # split(" ") as coco-caption: an empty caption is one empty token
        prec, rec = 0.0, 0.0
        for r in refs[key]:
            rw = r.split(" ")
            lcs = _lcs(rw, c)
            prec, rec = max(prec, lcs / len(c)), max(rec, lcs / len(rw))
        per_item.append((1 + beta ** 2) * prec * rec / (rec + beta ** 2 * prec) if prec and rec else 0.0)
    return sum(per_item) / len(per_item), per_item


# --------------------------------------------------------------------------- CIDEr-D
class CiderD:
    """CIDEr-D against a fixed set of references whose statistics are prepared once, so that scoring a
    batch of candidates is cheap enough to be a per-batch reward (SCST).

    references: image key -> its reference captions. The document frequencies and ``N`` come from
        these; to reproduce coco-caption's number for an evaluation set, pass exactly that set's
        references. For SCST, pass the training set's references once.

    The constructor tokenises the references and counts document frequencies (n-grams are kept as
    space-joined strings, which is several times smaller than tuples for a COCO-sized training set);
    :meth:`score` builds the tf-idf vectors of the references of the images it is asked about, once
    per call, so memory stays at the references' text plus the frequency table.
    """

    def __init__(self, references: References, n: int = 4, sigma: float = 6.0, tokenize: bool = True):
        if not references:
            raise ValueError("CiderD needs references for at least one image")
        self.n, self.sigma, self.tokenize = n, sigma, tokenize
        tok = ptb_tokenize if tokenize else (lambda s: s)
        self.refs: dict[str, list[str]] = {}
        doc_freq: Counter = Counter()
        for key, refs in references.items():
            if not refs:
                raise ValueError(f"image {key!r} has an empty list of references")
            self.refs[key] = [tok(r) for r in refs]
            doc_freq.update({g for r in self.refs[key] for per_n in self._counts(r) for g in per_n})
        self.doc_freq = doc_freq
        self.log_n = math.log(float(len(references)))

    def _counts(self, text: str) -> list[dict[str, int]]:
        """Tokenised text -> per n (1..n) its n-grams (space-joined) and their counts."""
        words = text.split()
        out: list[dict[str, int]] = []
        for k in range(1, self.n + 1):
            c: dict[str, int] = {}
            for i in range(len(words) - k + 1):
                g = " ".join(words[i:i + k])
                c[g] = c.get(g, 0) + 1
            out.append(c)
        return out

    def _vector(self, text: str) -> tuple[list[dict], list[float], int]:
        """Tokenised text -> (per n a dict n-gram -> tf-idf weight, per n the vector norm, bigram count)."""
        df, log_n = self.doc_freq, self.log_n
        vec, norm = [], []
        counts = self._counts(text)
        for per_n in counts:
            v = {g: float(tf) * (log_n - math.log(max(1.0, df.get(g, 0.0)))) for g, tf in per_n.items()}
            vec.append(v)
            norm.append(math.sqrt(sum(w * w for w in v.values())))
        length = sum(counts[1].values()) if self.n > 1 else 0  # coco-caption's "length" counts bigrams
        return vec, norm, length

    def _similarity(self, hyp, ref) -> list[float]:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-float(lh - lr) ** 2 / (2 * self.sigma ** 2))
        out = []
        for k in range(self.n):
            rk = vr[k]
            val = 0.0
            for g, w in vh[k].items():
                r = rk.get(g)
                if r is not None:
                    val += min(w, r) * r
            if nh[k] != 0 and nr[k] != 0:
                val /= nh[k] * nr[k]
            out.append(val * penalty)
        return out

    def score(self, candidates: Candidates | Iterable[tuple[str, str]]) -> tuple[float, list[float]]:
        """CIDEr-D of ``candidates``: a mapping image key -> caption, or ``(key, caption)`` pairs (several
        candidates may then share an image, e.g. SCST samples). Returns (mean, per candidate in order)."""
        pairs = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
        if not pairs:
            raise ValueError("no candidate captions to score")
        ref_vectors: dict[str, list] = {}
        per_item = []
        for key, caption in pairs:
            if key not in ref_vectors:
                if key not in self.refs:
                    raise ValueError(f"candidate {key!r} has no references")
                ref_vectors[key] = [self._vector(r) for r in self.refs[key]]
            refs = ref_vectors[key]
            hyp = self._vector(ptb_tokenize(caption) if self.tokenize else caption)
            total = [0.0] * self.n
            for ref in refs:
                total = [a + b for a, b in zip(total, self._similarity(hyp, ref))]
            per_item.append(sum(total) / self.n / len(refs) * 10.0)
        return sum(per_item) / len(per_item), per_item


def cider_d(candidates: Candidates, references: References, tokenize: bool = True) -> tuple[float, list[float]]:
    """CIDEr-D with document frequencies from ``references``: (mean, per candidate in order).

    ``CiderD(references).score(candidates)``; build the :class:`CiderD` once to score many batches.
    """
    return CiderD(references, tokenize=tokenize).score(candidates)


# --------------------------------------------------------------------------- METEOR
def _meteor_jar() -> Path | None:
    spec = importlib_util.find_spec("pycocoevalcap")
    for root in (spec.submodule_search_locations or []) if spec else []:
        jar = Path(root) / "meteor" / "meteor-1.5.jar"
        if jar.is_file():
            return jar
    return None


def meteor_unavailable() -> str | None:
    """Why METEOR cannot be computed here (None when it can)."""
    if shutil.which("java") is None:
        return "METEOR omitted: it needs java (install a JRE, e.g. apt-get install default-jre-headless)"
    if _meteor_jar() is None:
        return "METEOR omitted: it needs the Meteor 1.5 jar from pycocoevalcap (pip install pycocoevalcap)"
    return None


def meteor(candidates: Candidates, references: References, tokenize: bool = True) -> float:
    """Corpus METEOR 1.5 (the jar's aggregate over all images, as coco-caption reports it).

    Raises UserError when java or the jar is missing (see :func:`meteor_unavailable`).
    """
    reason = meteor_unavailable()
    if reason:
        raise UserError(reason)
    keys, cands, refs = _prepare(candidates, references, tokenize)
    jar = _meteor_jar()
    cmd = ["java", "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"]
    proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, encoding="utf-8")

    def ask(line: str) -> str:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline()
        if not answer:
            raise UserError(f"METEOR: java -jar {jar} stopped unexpectedly (exit {proc.poll()})")
        return answer.strip()

    try:
        stats = []
        for key, cand in zip(keys, cands):
            hyp = cand.replace("|||", "").replace("  ", " ")
            stats.append(ask(" ||| ".join(["SCORE", " ||| ".join(refs[key]), hyp])))
        ask(" ||| ".join(["EVAL"] + stats))  # the first answer is image 1's score
        for _ in range(len(stats) - 1):
            proc.stdout.readline()
        total = proc.stdout.readline()
        return float(total.strip())
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- everything
METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "METEOR")


def score_captions(candidates: Candidates, references: References, use_meteor: bool | None = None,
                   tokenize: bool = True) -> dict:
    """The COCO caption metrics of ``candidates`` against ``references`` (one dict, metric -> float).

    Keys: ``BLEU-1`` .. ``BLEU-4``, ``ROUGE-L``, ``CIDEr-D`` and ``METEOR``. ``use_meteor``: None adds
    METEOR when it can be computed and otherwise adds ``"notes": [why it is missing]``; True requires
    it (UserError without java); False leaves it out. References are PTB-tokenised once for all metrics.
    """
    keys, cands, refs = _prepare(candidates, references, tokenize)
    cand_map, ref_map = dict(zip(keys, cands)), {k: refs[k] for k in keys}
    if len(cand_map) != len(keys):
        raise ValueError("score_captions: candidate keys must be unique (one caption per image)")
    scores = {f"BLEU-{k + 1}": s for k, s in enumerate(bleu(cand_map, ref_map, tokenize=False))}
    scores["ROUGE-L"] = rouge_l(cand_map, ref_map, tokenize=False)[0]
    scores["CIDEr-D"] = cider_d(cand_map, ref_map, tokenize=False)[0]
    reason = meteor_unavailable()
    if use_meteor or (use_meteor is None and reason is None):
        scores["METEOR"] = meteor(cand_map, ref_map, tokenize=False)
    elif use_meteor is None:
        scores["notes"] = [reason]
    return scores
