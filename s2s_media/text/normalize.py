"""The one text normaliser, used for training targets and for scoring.

``normalize_text`` lower-cases, spells numbers as words, and strips punctuation, keeping
only ``a-z``, the apostrophe inside words, and single spaces.
"""
from __future__ import annotations

import re
import unicodedata

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


def normalize_text(text: str) -> str:
    """Normalise a transcript or caption for training and scoring.

    >>> normalize_text("Dr. Who's 2nd TARDIS cost $1,200.50 -- in 1984!")
    "dr who's second tardis cost dollars one thousand two hundred point five zero in nineteen eighty four"
    """
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
