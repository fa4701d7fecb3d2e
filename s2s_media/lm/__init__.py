"""External language models: a token n-gram (Kneser-Ney) and its shallow fusion into the search."""
from s2s_media.lm.fusion import LMFusion
from s2s_media.lm.ngram import NgramLM

__all__ = ["NgramLM", "LMFusion"]
