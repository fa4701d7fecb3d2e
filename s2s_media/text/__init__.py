"""Text normalisation and tokenizers."""
from s2s_media.text.normalize import normalize_text, number_to_words
from s2s_media.text.tokenizer import Tokenizer, CharTokenizer, SentencePieceTokenizer, tokenizer_from_dict

__all__ = [
    "normalize_text", "number_to_words",
    "Tokenizer", "CharTokenizer", "SentencePieceTokenizer", "tokenizer_from_dict",
]
