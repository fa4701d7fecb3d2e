"""The decoding-method names, listed once. This module imports nothing, so the CLI can read it at start-up.

:data:`s2s_media.decoding.search.SEARCHES` has one function per name; ``decode.method`` in a
config must be one of them.
"""

DECODING_METHODS = ("ctc_greedy", "ctc_prefix_beam", "attention", "rescoring")
