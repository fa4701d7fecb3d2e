"""Languages: what normalisation, tokenizers and scoring need to know about each one.

A language is named by a tag as Common Voice names its folders: ``en``, ``de``, ``ru``, ``zh-CN``,
``sv-SE``. Only the primary subtag (``zh``) decides the rules; the region is kept so that a
``zh-CN`` model refuses a ``zh-TW`` manifest (:func:`same_language`). Any well-formed tag is
accepted: a language without a row below gets the generic rules (written with spaces, digits kept).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from s2s_media.errors import UserError

DEFAULT_LANGUAGE = "en"
_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

# written without spaces between words: word error rates mean little, CER is the headline
_UNSPACED = {"zh", "ja", "th", "lo", "km", "my", "bo", "dz", "yue", "wuu", "nan"}
# scripts with thousands of characters: SentencePiece leaves the rarest 0.05 % to <unk>
# (its own recommendation for Chinese and Japanese), elsewhere every character is kept
_RICH_CHARSETS = {"zh", "ja", "ko", "yue", "wuu", "nan"}
# languages whose numbers s2s_media.text.normalize spells out as words
VERBALISED = {"en"}


@dataclass(frozen=True)
class Language:
    """The rules of one language tag."""

    tag: str                    # as given: "zh-CN"
    base: str                   # primary subtag, lower case: "zh"

    @property
    def spaces(self) -> bool:
        """Words are separated by spaces (False for Chinese, Japanese, Thai, ...)."""
        return self.base not in _UNSPACED

    @property
    def verbalises_numbers(self) -> bool:
        """Digits are spelled out as words by the normaliser (English); elsewhere they are kept."""
        return self.base in VERBALISED

    @property
    def headline_metric(self) -> str:
        """``"wer"``, or ``"cer"`` for languages written without spaces."""
        return "wer" if self.spaces else "cer"

    @property
    def character_coverage(self) -> float:
        """SentencePiece ``character_coverage`` for the language's script."""
        return 0.9995 if self.base in _RICH_CHARSETS else 1.0


@functools.lru_cache(maxsize=64)
def get_language(tag: str | None, where: str = "tokenizer.language") -> Language:
    """The :class:`Language` of ``tag`` (``None`` or ``""``: English). A malformed tag raises a one-line
    :class:`UserError` naming ``where``."""
    tag = tag or DEFAULT_LANGUAGE
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise UserError(f"{where}: {tag!r} is not a language tag; use an ISO 639 code such as en, de, ru, zh-CN")
    return Language(tag, tag.split("-")[0].lower())


def same_language(a: str | None, b: str | None) -> bool:
    """True if tags ``a`` and ``b`` name one language: equal primary subtags, and equal regions when both
    have one (``zh`` matches ``zh-CN``; ``zh-CN`` does not match ``zh-TW``). Case is ignored."""
    pa, pb = (a or DEFAULT_LANGUAGE).lower().split("-"), (b or DEFAULT_LANGUAGE).lower().split("-")
    return pa[0] == pb[0] and (len(pa) == 1 or len(pb) == 1 or pa[1:] == pb[1:])
