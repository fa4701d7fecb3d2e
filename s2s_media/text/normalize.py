"""The one text normaliser, used for training targets and for scoring, per language.

``normalize_text(text, "en")`` (the default) lower-cases, spells numbers as words, strips accents
and punctuation, and keeps only ``a-z``, the apostrophe inside words, and single spaces. Its
outputs are frozen: the bundled model and language model were trained on them.

Any other language (:mod:`s2s_media.text.language`) gets the script-neutral rules of
:func:`normalize_any`: NFKC, lower case by the language's rules, letters, marks and digits of any
script kept, punctuation, symbols and controls removed by Unicode category, and no spaces inside
runs of a script written without them (Chinese, Japanese, Thai). Digits stay digits: only English
has a number verbaliser (:func:`keeps_digits` tells when a normalised text still holds some).
"""
from __future__ import annotations

import re
import unicodedata

from s2s_media.text.language import get_language

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals ", "$": " dollars "}


def _under_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English: ``1984 -> 'one thousand nine hundred eighty four'``."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**15:  # too long to say as a number: read the digits
        return " ".join(_ONES[int(d)] for d in str(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += _under_thousand(n // scale) + [name]
            n %= scale
    if n or not words:
        words += _under_thousand(n)
    return " ".join(words)


def _ordinal(n: int) -> str:
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year(n: int) -> str:
    """Years 1100-1999 and 2010-2099 are said in pairs: 1984 -> nineteen eighty four."""
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    tail = ("oh " + _ONES[lo]) if lo < 10 else number_to_words(lo)
    return number_to_words(hi) + " " + tail


def _spell_number(match: re.Match) -> str:
    whole, frac, suffix = match.group(1), match.group(2), match.group(3)
    digits = whole.replace(",", "")
    n = int(digits)
    if suffix:
        return " " + _ordinal(n) + " "
    if frac:
        return " " + number_to_words(n) + " point " + " ".join(_ONES[int(d)] for d in frac) + " "
    if len(digits) == 4 and "," not in whole and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return " " + _year(n) + " "
    return " " + number_to_words(n) + " "


# no \b after the number: "1990s", "5pm" must still be spoken; the ordinal suffix needs a word end
_NUMBER = re.compile(r"(\d[\d,]*\d|\d)(?:\.(\d+))?(?:(st|nd|rd|th)\b)?", re.IGNORECASE)


def normalize_text(text: str, language: str = "en") -> str:
    """Normalise a transcript or caption for training and scoring, by the rules of ``language``.

    >>> normalize_text("Dr. Who's 2nd TARDIS cost $1,200.50 -- in 1984!")
    "dr who's second tardis cost dollars one thousand two hundred point five zero in nineteen eighty four"
    >>> normalize_text("Größe, Straße!", "de")
    'größe straße'
    """
    lang = get_language(language)
    if lang.verbalises_numbers:
        return _normalize_english(text)
    return normalize_any(text, lang.base, lang.spaces)


def _normalize_english(text: str) -> str:
    if not text.isascii():                    # ASCII is its own NFKD form: skip the slow path
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("`", "'")
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = _NUMBER.sub(_spell_number, text)
    text = text.lower()
    text = re.sub(r"[^a-z' ]+", " ", text)
    # keep apostrophes only inside words (don't, o'clock), not as quotes
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


# --------------------------------------------------------------------------- any other language
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "`": "'"})
_DOTLESS = str.maketrans({"I": "\u0131", "\u0130": "i"})          # Turkish and Azeri casing
_INNER_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
# scripts written without spaces between words: CJK ideographs and kana, Thai, Lao, Tibetan, Myanmar, Khmer
_UNSPACED_RANGES = ((0x0E00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3005, 0x3007), (0x3040, 0x30FF),
                    (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))


def _unspaced(c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _UNSPACED_RANGES)


def _keep(c: str) -> str:
    """``c`` if it is a letter, mark or digit (or the apostrophe); ``""`` for format controls; else a space."""
    cat = unicodedata.category(c)
    if cat[0] in "LMN" or c == "'":
        return c
    return "" if cat == "Cf" else " "


def normalize_any(text: str, base: str, spaces: bool = True) -> str:
    """The script-neutral rules for language ``base`` (a primary subtag such as ``de``, ``ru``, ``zh``).

    NFKC (full-width forms and ligatures fold, accents compose); lower case, with the dotted and dotless
    i of Turkish and Azeri; letters (L*), marks (M*) and numbers (N*) of every script kept; punctuation,
    symbols, separators and controls become spaces (format controls such as the soft hyphen vanish);
    the apostrophe survives only inside a word. Without ``spaces`` (Chinese, Japanese, Thai) no space
    is left next to a character of those scripts.
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if base in ("tr", "az"):
        text = text.translate(_DOTLESS)
    text = unicodedata.normalize("NFC", text.lower())
    text = "".join(map(_keep, text))
    words = _INNER_APOSTROPHE.sub(" ", text).split()
    if spaces or not words:
        return " ".join(words)
    out = [words[0]]
    for w in words[1:]:
        out.append(w if _unspaced(out[-1][-1]) or _unspaced(w[0]) else " " + w)
    return "".join(out)


def keeps_digits(normalized: str) -> bool:
    """True if a normalised text still holds digits (a language without a number verbaliser)."""
    return any(unicodedata.category(c) == "Nd" for c in normalized)
