"""``s2s-media lm SOURCE... --tokenizer T --out LM.pt``: train an n-gram language model on text."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lm",
        description="Train an interpolated Kneser-Ney n-gram over a model's tokenizer units (characters or "
                    "BPE pieces) on text, normalised like the transcripts. Fuse it into decoding with "
                    "'s2s-media evaluate --lm LM.pt' or store it in a model with 's2s-media export --lm LM.pt'; "
                    "decode.lm_weight and decode.lm_bonus set its weight and per-token reward.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="'fortunes' (the Debian package) or UTF-8 text files, one or more sentences per line")
    p.add_argument("--tokenizer", required=True,
                   help="the tokenizer to model: a tokenizer.pt or any checkpoint of the model that will use the LM")
    p.add_argument("--out", "-o", required=True, help="the LM file to write")
    p.add_argument("--order", type=int, default=6, help="n-gram order (default 6, for characters)")
    p.add_argument("--prune", type=int, default=1,
                   help="drop n-grams of order >= 3 seen fewer times than this (default 1: keep all)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="MANIFEST",
                   help="manifests whose transcripts stay out of the LM text (dev and test splits)")
    p.add_argument("--dev", metavar="MANIFEST", help="report the LM's per-token perplexity on these transcripts")
    p.add_argument("--language", default="en", metavar="TAG",
                   help="normalise the text by this language's rules: the model's tokenizer.language (default en)")
    p.add_argument("--arpa", metavar="OUT.arpa", help="also write the LM as an ARPA file (KenLM reads it; words are "
                   "the tokenizer's units, <s> and </s>); it scores every sentence as the LM file does")
    p.set_defaults(run=run)


def run(args) -> int:
    from s2s_media.data.manifest import read_manifest
    from s2s_media.errors import UserError
    from s2s_media.lm import NgramLM
    from s2s_media.lm.arpa import arpa_words, write_arpa
    from s2s_media.training.lm import save_lm_file, train_lm
    from s2s_media.text.normalize import normalize_text
    from s2s_media.training.run import load_tokenizer

    if args.order < 1 or (args.arpa and args.order < 2):
        raise UserError(f"--order {args.order}: must be at least 1 (2 with --arpa: KenLM needs bigrams)")
    tokenizer = load_tokenizer(args.tokenizer)
    try:
        lm, stats = train_lm(args.sources, tokenizer, args.order, args.exclude, args.prune, args.language)
    except ValueError as e:     # an order too high for the vocabulary's context keys
        raise UserError(f"--order {args.order}: {e}") from None
    if args.dev:
        seqs = [tokenizer.encode(normalize_text(r.text, args.language)) for r in read_manifest(args.dev)]
        stats["dev_perplexity"] = round(lm.perplexity(seqs), 4)
    path = save_lm_file(args.out, lm, tokenizer, {"sources": list(args.sources), **stats})
    if args.arpa:       # from the LM as stored (float16), so that both files score alike
        stored = NgramLM.from_dict(lm.to_dict())
        print(f"{write_arpa(stored, arpa_words(tokenizer.itos, lm.bos, lm.eos), args.arpa)}: the same LM as ARPA")
    ppl = f", perplexity {stats['dev_perplexity']:.3f} per token on {args.dev}" if args.dev else ""
    print(f"{path}: order-{args.order} n-gram, {stats['ngrams']} n-grams from {stats['sentences']} sentences "
          f"({stats['words']} words; {stats['excluded_sentences']} held-out sentences excluded){ppl}")
    return 0
