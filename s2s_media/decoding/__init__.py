"""Search: CTC greedy and prefix beam search (Python and native), attention beam search, attention rescoring."""
from s2s_media.decoding.beam_search import (GNMTLengthNorm, Hypothesis, LengthPenalty, PowerLengthNorm,
                                            beam_search, greedy_search)
from s2s_media.decoding.ctc import (CTCHyp, CTCPrefixBeamSearch, ctc_greedy, ctc_prefix_beam_search,
                                    ctc_prefix_beam_search_batch)
from s2s_media.decoding.native import KenLMFusion, NativeCTCSearch, native_nbest_batch
from s2s_media.decoding.rescoring import RescoredHyp, attention_rescoring, attention_scores

__all__ = [
    "CTCHyp", "CTCPrefixBeamSearch", "ctc_greedy", "ctc_prefix_beam_search", "ctc_prefix_beam_search_batch",
    "NativeCTCSearch", "native_nbest_batch", "KenLMFusion",
    "Hypothesis", "LengthPenalty", "PowerLengthNorm", "GNMTLengthNorm", "beam_search", "greedy_search",
    "RescoredHyp", "attention_rescoring", "attention_scores",
]
