"""s2s-media: streaming speech-to-text and image captioning on one shared attention decoder."""

__version__ = "0.1.0"
