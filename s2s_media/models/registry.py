"""Name -> class tables. Adding a component is one entry here, never a new branch elsewhere.

Each class carries its own ``Config`` dataclass; a recipe's ``*_conf`` block is checked against it.
"""
from __future__ import annotations

from typing import Any

from s2s_media.typed import from_dict
from s2s_media.errors import ConfigError
from s2s_media.models.attention_encoder import ConformerEncoder, TransformerEncoder
from s2s_media.models.image_encoder import ImageEncoder
from s2s_media.models.lstm_decoder import LSTMDecoder
from s2s_media.models.rnn_encoder import PyramidalLSTMEncoder
from s2s_media.models.transformer_decoder import TransformerDecoder

ENCODERS: dict[str, type] = {
    "conformer": ConformerEncoder,
    "transformer": TransformerEncoder,
    "pyramidal_lstm": PyramidalLSTMEncoder,
}

IMAGE_ENCODERS: dict[str, type] = {
    "resnet": ImageEncoder,
}

DECODERS: dict[str, type] = {
    "transformer": TransformerDecoder,
    "lstm": LSTMDecoder,
}


def component_config(table: dict[str, type], name: str, conf: dict, where: str) -> Any:
    """The typed config for ``table[name]`` built from ``conf``; clear errors for bad names and keys."""
    if name not in table:
        raise ConfigError(f"{where}: unknown component '{name}'; choose one of {sorted(table)}")
    return from_dict(table[name].Config, conf, f"{where}_conf")
