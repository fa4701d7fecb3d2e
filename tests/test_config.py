"""Typed configs from YAML: round trips, dotted-path errors, --set overrides, the recipe config."""
from pathlib import Path

import pytest
import yaml

from s2s_media.config import Config, apply_overrides, config_from_dict, load_config, to_dict
from s2s_media.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "synthetic_speech" / "conf" / "conformer.yaml"


def _load(tmp_path, data: dict, overrides=()):
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, list(overrides))


def test_yaml_round_trip(tmp_path):
    data = {
        "model": {"encoder": "transformer", "encoder_conf": {"d_model": 64, "n_layers": 2},
                  "decoder": "lstm", "decoder_conf": {"hidden": 32}, "ctc_weight": 0.5},
        "tokenizer": {"kind": "char"},
        "data": {"train": "tr.jsonl", "max_batch_seconds": 50, "augment": {"noise": {"prob": 0.2}}},
        "optim": {"lr": 0.01, "betas": [0.8, 0.9], "scheduler": "cosine"},
        "train": {"epochs": 3, "amp": "off"},
        "decode": {"method": "attention", "beam": 4},
    }
    cfg = _load(tmp_path, data)
    assert isinstance(cfg, Config)
    assert cfg.model.encoder == "transformer" and cfg.model.encoder_conf == {"d_model": 64, "n_layers": 2}
    assert cfg.model.decoder == "lstm" and cfg.model.ctc_weight == 0.5
    assert cfg.tokenizer.kind == "char"
    assert cfg.data.max_batch_seconds == 50.0 and isinstance(cfg.data.max_batch_seconds, float)
    assert cfg.data.augment.noise.prob == 0.2
    assert cfg.data.augment.speed.factors == [0.9, 1.0, 1.1]          # untouched blocks keep defaults
    assert cfg.optim.betas == [0.8, 0.9] and cfg.optim.scheduler == "cosine"
    assert cfg.train.epochs == 3 and cfg.train.amp == "off"
    assert cfg.decode.method == "attention" and cfg.decode.beam == 4
    # and back: dumping the loaded config and reading it again gives the same Config
    assert _load(tmp_path, to_dict(cfg)) == cfg


def test_config_from_dict_inverts_to_dict():
    cfg = load_config(RECIPE)
    again = config_from_dict(to_dict(cfg))
    assert again == cfg
    assert again is not cfg and again.data.augment is not cfg.data.augment


def test_recipe_config_loads():
    cfg = load_config(RECIPE)
    assert cfg.model.encoder == "conformer" and cfg.model.encoder_conf["causal"] is True
    from s2s_media.models.seq2seq import param_count
    from s2s_media.models.seq2seq import Seq2SeqModel
    # the issue asks for a Conformer + Transformer decoder of about 5-10 M parameters; the CPU recipe
    # is at the low end (4.1 M with its 32 characters; RESULTS.md says why)
    assert 4e6 <= param_count(Seq2SeqModel(cfg.model, 32 + 4)) <= 10e6
    assert cfg.tokenizer.kind == "char"
    assert cfg.data.augment.spec_augment.freq_width == 15
    assert cfg.data.augment.noise.snr_db == [15.0, 35.0]


@pytest.mark.parametrize("data, where", [
    ({"bogus": 1}, "bogus"),
    ({"train": {"epochz": 1}}, "train.epochz"),
    ({"data": {"augment": {"noise": {"bogus": 1}}}}, "data.augment.noise.bogus"),
    ({"model": {"encoder_conf": {"bogus": 1}}}, "model.encoder_conf.bogus"),
    ({"model": {"decoder": "lstm", "decoder_conf": {"d_model": 8}}}, "model.decoder_conf.d_model"),
])
def test_unknown_key_names_dotted_path(tmp_path, data, where):
    with pytest.raises(ConfigError, match=rf"{where}: unknown key"):
        _load(tmp_path, data)
    with pytest.raises(ConfigError, match=rf"{where}: unknown key"):
        config_from_dict(data)


@pytest.mark.parametrize("data, where", [
    ({"train": {"epochs": "ten"}}, "train.epochs"),                        # string for int
    ({"train": {"epochs": True}}, "train.epochs"),                         # bool for int
    ({"train": {"epochs": 1.5}}, "train.epochs"),                          # float for int
    ({"optim": {"lr": [0.1]}}, "optim.lr"),                                # list for float
    ({"optim": {"lr": False}}, "optim.lr"),                                # bool for float
    ({"optim": {"betas": 0.9}}, "optim.betas"),                            # scalar for list
    ({"optim": {"betas": [0.9, "x"]}}, r"optim.betas\[1\]"),
    ({"data": {"train": 5}}, "data.train"),                                # int for str
    ({"train": {"amp": 1}}, "train.amp"),
    ({"tokenizer": {"path": 3}}, "tokenizer.path"),                        # Optional[str]
    ({"model": {"encoder_conf": {"n_layers": "x"}}}, "model.encoder_conf.n_layers"),
    ({"model": {"encoder_conf": {"causal": 1}}}, "model.encoder_conf.causal"),
    ({"model": "conformer"}, "model"),                                     # scalar for a section
])
def test_wrong_type_names_dotted_path(tmp_path, data, where):
    with pytest.raises(ConfigError, match=rf"{where}: "):
        _load(tmp_path, data)


@pytest.mark.parametrize("data, where", [
    ({"tokenizer": {"kind": "bpe"}}, "tokenizer.kind"),
    ({"tokenizer": {"model_type": "wordpiece"}}, "tokenizer.model_type"),
    ({"optim": {"scheduler": "linear"}}, "optim.scheduler"),
    ({"decode": {"method": "beam"}}, "decode.method"),
    ({"train": {"device": "gpu"}}, "train.device"),
])
def test_literal_violation(tmp_path, data, where):
    with pytest.raises(ConfigError, match=rf"{where}: .* is not one of"):
        _load(tmp_path, data)


@pytest.mark.parametrize("block, name", [("encoder", "lstm"), ("decoder", "conformer")])
def test_unknown_component_name(tmp_path, block, name):
    with pytest.raises(ConfigError, match=rf"model.{block}: unknown component '{name}'"):
        _load(tmp_path, {"model": {block: name}})


def test_range_checks():
    with pytest.raises(ConfigError, match="model.ctc_weight"):
        config_from_dict({"model": {"ctc_weight": 1.5}})
    with pytest.raises(ConfigError, match="optim.accum_grad"):
        config_from_dict({"optim": {"accum_grad": 0}})
    with pytest.raises(ConfigError, match="decode.lm_weight"):
        config_from_dict({"decode": {"lm_weight": -0.1}})
    with pytest.raises(ConfigError, match="decode.rescore_nbest"):
        config_from_dict({"decode": {"rescore_nbest": -1}})
    with pytest.raises(ConfigError, match="decode.token_floor"):
        config_from_dict({"decode": {"token_floor": 1.0}})
    with pytest.raises(ConfigError, match="decode.blank_skip"):
        config_from_dict({"decode": {"blank_skip": 0.0}})


def test_error_message_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"conf\.yaml: train\.epochs"):
        _load(tmp_path, {"train": {"epochs": "x"}})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_set_overrides_nested_and_parsed_as_yaml(tmp_path):
    cfg = _load(tmp_path, {"train": {"epochs": 3}}, [
        "train.epochs=7",                                  # replaces a file value
        "optim.lr=5e-4",
        "optim.betas=[0.5, 0.6]",
        "model.encoder_conf.n_layers=3",                   # into a component block
        "data.augment.noise.enabled=false",                # three levels deep
        "tokenizer.path=null",
        "train.exp_dir=exp/a=b",                           # only the first '=' splits
        "decode.method=attention",
    ])
    assert cfg.train.epochs == 7
    assert cfg.optim.lr == 5e-4
    assert cfg.optim.betas == [0.5, 0.6]
    assert cfg.model.encoder_conf == {"n_layers": 3}
    assert cfg.data.augment.noise.enabled is False and cfg.data.augment.noise.prob == 0.5
    assert cfg.tokenizer.path is None
    assert cfg.train.exp_dir == "exp/a=b"
    assert cfg.decode.method == "attention"


def test_set_override_into_a_section_left_empty_in_yaml(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("decode:\ntrain:\n  epochs: 2\n")    # 'decode:' alone parses as null
    cfg = load_config(path, ["decode.beam=3"])
    assert cfg.decode.beam == 3 and cfg.train.epochs == 2


def test_scientific_notation_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads ``1e-3`` as a string; configs and --set must still take it as a float
    path = tmp_path / "conf.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  min_lr: 5E-6\n")
    cfg = load_config(path, ["optim.weight_decay=1e-2"])
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.weight_decay) == (1e-3, 5e-6, 1e-2)


def test_set_overrides_are_type_checked(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs: expected an integer, got 'ten'"):
        load_config(None, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="train.bogus: unknown key"):
        load_config(None, ["train.bogus=1"])


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["foo"])
    with pytest.raises(ConfigError, match="'epochs' is not a section"):
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])
