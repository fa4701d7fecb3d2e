"""``s2s-media tokenizer CONFIG.yaml``: train the configured tokenizer on the training manifest."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tokenizer",
        description="Fit the tokenizer block of CONFIG (char, word or SentencePiece BPE/unigram) on the "
                    "normalised transcripts of data.train (and/or the captions of data.caption_train, by model.modalities) and save it to tokenizer.path "
                    "(default <train.exp_dir>/tokenizer.pt), where 'train' picks it up.")
    p.add_argument("config", help="YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.set_defaults(run=run)


def run(args) -> int:
    from s2s_media.config import load_config
    from s2s_media.training.run import save_tokenizer, tokenizer_path, train_tokenizer, training_texts
    cfg = load_config(args.config, args.overrides)
    tok = train_tokenizer(cfg, training_texts(cfg))
    path = save_tokenizer(tok, tokenizer_path(cfg))
    print(f"{cfg.tokenizer.kind} tokenizer with {tok.vocab_size} ids written to {path}")
    return 0
