"""Search: CTC greedy and prefix beam search (Python and native), attention rescoring (numpy, no torch), and
the attention beam search (:mod:`s2s_media.decoding.beam_search`, torch's step-wise decoder)."""
from s2s_media.decoding.ctc import (CTCHyp, CTCPrefixBeamSearch, ctc_greedy, ctc_prefix_beam_search,
                                    ctc_prefix_beam_search_batch)
from s2s_media.decoding.native import KenLMFusion, NativeCTCSearch, native_nbest_batch
from s2s_media.decoding.rescoring import RescoredHyp, attention_rescoring, attention_scores

__all__ = [
    "CTCHyp", "CTCPrefixBeamSearch", "ctc_greedy", "ctc_prefix_beam_search", "ctc_prefix_beam_search_batch",
    "NativeCTCSearch", "native_nbest_batch", "KenLMFusion",
    "RescoredHyp", "attention_rescoring", "attention_scores",
]
