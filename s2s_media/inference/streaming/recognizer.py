"""Streaming recognition: audio pieces in, partial and final transcripts out.

One :class:`StreamingRecognizer` holds the model; each client gets a :class:`Stream`. The data
flow per stream is the offline one, cut into chunks:

    accept_waveform -> StreamResampler -> StreamingLogMel -> CMVN -> AttentionEncoder.forward_chunk
    -> CTC head -> CTCPrefixBeamSearch.advance (partials) -> Endpointer
    -> at an endpoint: attention_rescoring of the n-best over the segment's encoder output (final)

``decode_streams`` runs ONE batched encoder call for the next chunk of every ready stream
(their caches stacked), then the search, endpoint checks and (batched) rescoring per stream.

Exactness. A segment decoded in chunks equals offline decoding of the same audio with
``model.encode(..., chunk_size=C, left_chunks=N)`` (:func:`~s2s_media.inference.streaming.evaluate.offline_decode`):
features are frame-for-frame ``log_mel``'s (numpy, the training ``LogMel`` to float rounding), the encoder output matches to ~1e-6, and the prefix
search is incremental. Two deliberate differences: with ``num_left_chunks = -1`` the left context
is capped at ``max_left_chunks`` chunks (memory), and every endpoint resets the encoder (below).

Segments and endpoints. The open segment ends when an endpoint rule fires (checked after each
chunk, see :class:`~s2s_media.inference.streaming.config.EndpointConfig`; silence is judged by a
voice activity detector over the stream's audio, or by the CTC blank) or when the input ends. Then the
search, the endpointer and, as in WeNet's continuous decoding, the encoder's attention/conv caches
and positions are reset; the feature front-end runs on. So positions never grow past one segment
(at most ``rule3_max_utterance`` long), and each segment is encoded like a training utterance.
Memory per stream is bounded: the left-context cache by ``max_cache_frames``, the segment's
encoder output kept for rescoring by rule 3 (it is unbounded only with endpointing disabled).

Events (``Stream.pop_events``: :mod:`~s2s_media.inference.events`, typed; they read like
these dicts too), times in seconds from the start of the stream, 3 decimals:

* ``{"type": "partial", "segment": K, "text", "start", "end"}`` whenever the open segment's best
  CTC text changes (``end``: the audio decoded so far);
* ``{"type": "final", "segment": K, "text", "start", "end", "words": [{"word", "start", "end",
  "confidence"}]}`` when a segment ends, then ``K`` increments. A segment that ends without text
  (silence closed by rule 2 or 3) emits nothing, unless a partial with text was shown for it. At
  the end of the input the open segment gets a final if it has text, or if the stream has not
  emitted any final yet and received audio: every stream with audio ends with at least one final,
  and no empty final follows a completed sentence. Word times and confidences are those of
  :func:`~s2s_media.decoding.timing.tokens_to_words` (peak frames of the CTC alignment). A stream
  created with ``StreamOptions(alternatives=N)`` adds ``"alternatives": [{"text", "confidence"}]``.

Per-stream options (:class:`~s2s_media.inference.events.StreamOptions`, built from text by
:meth:`StreamingRecognizer.stream_options`): hotwords or a phrase grammar biasing or restricting
the stream's prefix search, the number of alternatives its finals carry, and its endpoint rules. A stream with a
grammar writes words outside its phrases as ``[unk]``.

Threads. ``accept_waveform``, ``input_finished``, ``pop_events`` and ``is_ready`` may be called
from any thread while another thread runs ``decode_streams``; decoding calls are serialised by
the recognizer. Audio-side work in ``accept_waveform`` is only resampling (soxr, C); features and
everything after run in ``decode_streams``.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np

from s2s_media.arrays import lengths_to_mask, pad_batch, to_numpy
from s2s_media.decoding.context import (MAX_HOTWORDS, Compiled, as_hotwords, compile_grammar, compile_hotwords,
                                        render_grammar_words)
from s2s_media.decoding.ctc import CTCHyp
from s2s_media.decoding.timing import hypothesis_confidences, tokens_to_words
from s2s_media.decoding.types import Decoded
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE
from s2s_media.inference.loaded import LoadedModel
from s2s_media.inference.pipeline import Searcher
from s2s_media.inference.streaming.config import EndpointConfig, StreamingConfig
from s2s_media.inference.streaming.endpoint import Endpointer
from s2s_media.inference.events import Alternative, Event, Final, Partial, StreamOptions, Word
from s2s_media.inference.streaming.features import StreamingLogMel, StreamResampler
from s2s_media.text.tokenizer import BLANK

def _as_samples(samples) -> np.ndarray:
    """Validate one piece of audio: ``(n,)`` float in [-1, 1] -> float32. Raises UserError."""
    x = to_numpy(samples)
    if x.ndim != 1:
        raise UserError(f"accept_waveform: samples must be mono with shape (n,), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise UserError(f"accept_waveform: samples must be float in [-1, 1], got dtype {x.dtype} "
                        "(divide 16-bit PCM by 32768)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise UserError("accept_waveform: samples contain NaN or infinity")
    return x


class Stream:
    """One audio stream being recognised; create it with :meth:`StreamingRecognizer.create_stream`."""

    def __init__(self, recognizer: StreamingRecognizer, options: StreamOptions | None = None):
        self._rec = recognizer
        self.options = options or StreamOptions()
        self._lock = threading.Lock()
        # input side: any thread, under _lock
        self._pending: list[np.ndarray] = []
        self._resampler: StreamResampler | None = None
        self._sample_rate: int | None = None
        self._input_samples = 0           # at the input rate
        self._samples = 0                 # at 16 kHz
        self._finished = False
        self._events: list[dict] = []
        self._done = False
        # decoding side: only the thread in decode_streams
        self._logmel = StreamingLogMel(recognizer.n_mels)
        self._flushed = False             # the front-end has seen the end of the input
        self._feats = np.zeros((0, recognizer.n_mels), np.float32)  # CMVN'd, from the next window
        self._frames_done = 0             # encoder frames decoded since the stream started
        self._cache = recognizer.encoder.init_cache(1, recognizer.device)
        self._search = recognizer.searcher.ctc_stream(self.options.context)
        self._endpointer = Endpointer(self.options.endpoint or recognizer.config.endpoint, recognizer.frame_shift)
        self._segment = 0
        self._segment_start = 0           # encoder frame where the open segment starts
        self._memory: list[np.ndarray] = []   # the open segment's encoder output (for rescoring)
        self._partial = ""
        self._shown_text = False          # a partial with text was emitted for the open segment
        self._finals = 0

    # ---- input (any thread)
    def accept_waveform(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Append audio: ``samples (n,)`` float32 mono in [-1, 1] at ``sample_rate`` (resampled to
        16 kHz incrementally; a stream keeps the rate of its first piece)."""
        x = _as_samples(samples)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise UserError(f"accept_waveform: sample_rate must be a positive integer, got {sample_rate!r}")
        sample_rate = int(sample_rate)
        with self._lock:
            if self._finished:
                raise UserError("accept_waveform: input_finished() was already called on this stream; "
                                "create a new stream")
            if self._sample_rate is None:
                self._sample_rate, self._resampler = sample_rate, StreamResampler(sample_rate)
            elif sample_rate != self._sample_rate:
                raise UserError(f"accept_waveform: sample_rate {sample_rate} differs from this stream's "
                                f"{self._sample_rate}; one stream has one rate")
            self._input_samples += x.size
            self._push(self._resampler(x))

    def input_finished(self) -> None:
        """No more audio: the rest is decoded (a short last chunk included) and a final is forced."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._resampler is not None:
                self._push(self._resampler.flush())

    def _push(self, y: np.ndarray) -> None:
        if y.size:
            self._pending.append(y)
            self._samples += y.size

    def pop_events(self) -> list[Event]:
        """The events since the last call, in order (see the module docstring)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    @property
    def done(self) -> bool:
        """The input is finished and all of it is decoded (the last final, if any, is queued)."""
        return self._done

    @property
    def seconds_received(self) -> float:
        """Seconds of audio accepted so far (at the input's own rate)."""
        return self._input_samples / (self._sample_rate or SAMPLE_RATE)

    @property
    def segment(self) -> int:
        """Index of the open segment (the number of finals emitted)."""
        return self._segment

    @property
    def cache_frames(self) -> int:
        """Frames of left context held by the encoder cache (bounded by ``max_cache_frames``)."""
        return self._cache.frames

    @property
    def cache_bytes(self) -> int:
        """Bytes held for this stream's decoding state: encoder cache, features, segment memory."""
        feats = self._feats.nbytes + 4 * self._logmel.buffered_samples
        return self._cache.num_bytes() + feats + sum(m.nbytes for m in self._memory)

    def _emit(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    # ---- decoding (the decode_streams thread): what the recognizer calls
    def input_state(self) -> tuple[int, bool, bool]:
        """``(samples received at 16 kHz, input finished, fully decoded)``, read together."""
        with self._lock:
            return self._samples, self._finished, self._done

    @property
    def frames_done(self) -> int:
        """Encoder frames decoded since the stream started."""
        return self._frames_done

    @property
    def flushed(self) -> bool:
        """The front-end has seen the end of the input."""
        return self._flushed

    @property
    def drained(self) -> bool:
        """No whole encoder frame is left in the features."""
        return self._rec.encoder_frames(self._feats.shape[0]) == 0

    def features(self, frames: int) -> np.ndarray:
        """The next ``frames`` feature frames (CMVN'd), ``(frames, n_mels)``."""
        return self._feats[:frames]

    @property
    def cache(self):
        """The encoder's left context for this stream."""
        return self._cache

    @cache.setter
    def cache(self, cache) -> None:
        self._cache = cache

    def nbest(self, n: int | None) -> list[CTCHyp]:
        """The open segment's best ``n`` CTC hypotheses (all when None)."""
        return self._search.nbest(n)

    @property
    def has_memory(self) -> bool:
        return bool(self._memory)

    def segment_memory(self) -> np.ndarray:
        """The open segment's encoder output ``(T, d)``, kept for rescoring."""
        return np.concatenate(self._memory)

    def _take_input(self) -> tuple[list[np.ndarray], bool]:
        with self._lock:
            pending, self._pending = self._pending, []
            return pending, self._finished

    def next_window(self) -> int:
        """Turn new audio into features; the number of encoder frames of this stream's next chunk
        (0: wait for more audio), its features being ``self._feats[:window_frames(n)]``."""
        pending, finished = self._take_input()
        rec = self._rec
        new = []
        if pending:
            audio = np.concatenate(pending)
            self._endpointer.accept_audio(audio)
            new.append(rec.normalise(self._logmel.accept(audio)))
        if finished and not self._flushed:
            self._endpointer.finish_audio()
            new.append(rec.normalise(self._logmel.finish()))
            self._flushed = True
        if new:
            self._feats = np.concatenate([self._feats] + new)
        available = rec.encoder_frames(self._feats.shape[0])
        chunk = rec.config.chunk_size
        if available >= chunk:
            return chunk
        return available if self._flushed else 0

    def consumed(self, n: int, out: np.ndarray, log_probs: np.ndarray) -> str | None:
        """Advance search and endpointer over ``n`` decoded frames; the endpoint rule that fired, or
        ``"end"`` when the input is over and decoded, or None. out: (n, d); log_probs: (n, V)."""
        rec = self._rec
        self._feats = self._feats[rec.stride * n:]
        self._frames_done += n
        self._search.advance(log_probs)
        self._endpointer.update(np.exp(log_probs[:, BLANK]).tolist(), (self._frames_done - n) * rec.frame_shift)
        if rec.config.rescore:
            self._memory.append(out.copy())       # not a view: it would pin the whole batch's output
        top = self._search.nbest(1)
        tokens = top[0].tokens if top else []          # a grammar accepts no hypothesis mid-phrase
        rule = self._endpointer.detect(bool(tokens))
        if rule is None and self._flushed and rec.encoder_frames(self._feats.shape[0]) == 0:
            rule = "end"
        if rule is None:
            text = self._text(tokens)
            if text != self._partial:
                self._partial, self._shown_text = text, self._shown_text or bool(text)
                self._emit(Partial(self._segment, text, **rec.span(self._segment_start, self._frames_done)))
        return rule

    def _text(self, tokens: list[int]) -> str:
        """The text of ``tokens``; with a phrase grammar, words outside its phrases are ``[unk]``."""
        text = self._rec.tokenizer.decode(tokens)
        if self.options.phrases:
            text = " ".join(render_grammar_words(text.split(), self.options.phrases))
        return text

    def _words(self, hyp: CTCHyp, text: str, start_s: float, end_s: float) -> list[Word]:
        """The words of ``hyp`` (written as ``text``: a grammar's ``[unk]``) with their times."""
        words = tokens_to_words(self._rec.tokenizer, Decoded(hyp.tokens, hyp.score, hyp.frames, hyp.probs),
                                self._rec.frame_shift, start_s, end_s, self._rec.loaded.calibration)
        if self.options.phrases:
            for w, shown in zip(words, text.split()):
                w["word"] = shown
        return [Word(**w) for w in words]

    def close_segment(self, ranked: list[CTCHyp], at_end: bool) -> None:
        """End the open segment with the best of ``ranked`` (its hypotheses, best first; may be empty);
        emit its final (see the module docstring), with alternatives when asked for; reset."""
        rec = self._rec
        best = ranked[0] if ranked else CTCHyp([], float("-inf"))
        text = self._text(best.tokens)
        start_s = self._segment_start * rec.frame_shift
        end_s = max(self._frames_done * rec.frame_shift, self._samples / SAMPLE_RATE) if at_end \
            else self._frames_done * rec.frame_shift
        if text or self._shown_text or (at_end and self._finals == 0 and self._samples > 0):
            words = self._words(best, text, start_s, end_s)
            alternatives = []
            if self.options.alternatives > 0 and ranked:
                conf = hypothesis_confidences([h.total for h in ranked])
                for h, c in zip(ranked[:self.options.alternatives], conf):
                    alt_text = self._text(h.tokens)
                    alternatives.append(Alternative(alt_text, round(c, 4), self._words(h, alt_text, start_s, end_s)))
            self._emit(Final(self._segment, text, round(start_s, 3), round(end_s, 3), words, alternatives))
            self._segment += 1
            self._finals += 1
        self._search.reset()
        self._endpointer.reset()
        self._cache = rec.encoder.init_cache(1, rec.device)
        self._memory = []
        self._partial, self._shown_text = "", False
        self._segment_start = self._frames_done
        if at_end:
            with self._lock:
                self._done = True


class StreamingRecognizer:
    """Decodes many :class:`Stream` with one model.

    loaded: a model with a CTC head and a Transformer or causal Conformer encoder.
    config: chunking, search and endpointing (:class:`StreamingConfig`; defaults when None).
    """

    def __init__(self, loaded: LoadedModel, config: StreamingConfig | None = None, device="cpu"):
        self.config = config or StreamingConfig()
        self.config.validate()
        self.loaded = loaded
        self.device = device
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        if "audio" not in self.model.encoders:
            raise UserError("streaming recognition needs a speech model; this model has no audio encoder")
        if self.model.ctc is None:
            raise UserError("streaming needs a CTC head; this model was trained with model.ctc_weight 0")
        self.encoder = self.model.encoders["audio"]   # read through AudioEncoder's streaming interface
        self.encoder.check_streamable()
        self.n_mels = loaded.config.model.n_mels
        self.stride = self.encoder.stride
        self.right_context = self.encoder.right_context
        self.frame_shift = self.encoder.frame_shift
        # the model's decoding options, with what the streaming config sets in their place: the same
        # search that offline_decode runs over a whole utterance
        self.decode = loaded.config.decode.override(
            method="rescoring" if self.config.rescore else "ctc_prefix_beam", beam=self.config.beam,
            ctc_weight=self.config.ctc_weight, lm_weight=self.config.lm_weight, chunk_size=self.config.chunk_size,
            left_chunks=self.config.num_left_chunks)
        self.searcher = Searcher(loaded, self.decode, task="asr")
        self.prefix, self.lm = self.searcher.prefix, self.searcher.lm
        self._lock = threading.Lock()

    @property
    def beam(self) -> int:
        return self.decode.beam

    @property
    def ctc_weight(self) -> float:
        return self.decode.ctc_weight

    # ---- helpers shared with Stream
    def encoder_frames(self, feature_frames: int) -> int:
        """Encoder frames whose subsampling windows fit in ``feature_frames`` frames."""
        need = self.right_context + 1
        return (feature_frames - need) // self.stride + 1 if feature_frames >= need else 0

    def window_frames(self, n: int) -> int:
        """Feature frames under ``n`` encoder frames' subsampling windows: ``4n + 3``."""
        return self.stride * (n - 1) + self.right_context + 1

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        """Per-frame CMVN of ``(T, n_mels)`` log-mels (the model's statistics), numpy in and out."""
        return to_numpy(self.encoder.normalise(self.model.as_input(feats)))

    def span(self, start_frame: int, end_frame: int) -> dict:
        return {"start": round(start_frame * self.frame_shift, 3), "end": round(end_frame * self.frame_shift, 3)}

    # ---- the API
    def create_stream(self, options: StreamOptions | None = None) -> Stream:
        """A new stream; ``options`` (:meth:`stream_options`) set its hotwords, grammar and alternatives."""
        return Stream(self, options)

    def stream_options(self, hotwords=None, phrase_list=None, alternatives: int = 0,
                       max_hotwords: int = MAX_HOTWORDS, endpoint: dict | None = None) -> tuple[StreamOptions, list[str]]:
        """Per-stream options from text, and one line per phrase left out (characters outside the
        vocabulary). hotwords: phrases, ``"phrase:boost"`` or ``(phrase, boost)``; phrase_list: a
        grammar of phrases (``[unk]`` allows other words); endpoint: fields of
        :class:`~s2s_media.inference.streaming.config.EndpointConfig` that replace the recognizer's for
        this stream. An empty list, one over ``max_hotwords``, both lists at once or a bad endpoint
        field is a :class:`UserError`."""
        ep = None
        if endpoint:
            unknown = sorted(set(endpoint) - set(EndpointConfig.__dataclass_fields__))
            if unknown:
                raise UserError(f"endpoint: unknown field {unknown[0]!r}")
            ep = dataclasses.replace(self.config.endpoint, **endpoint)
            ep.validate("endpoint")
        if hotwords is not None and phrase_list is not None:
            raise UserError("hotwords and phrase_list: give one or the other (a phrase list already "
                            "restricts the result to its phrases)")
        language = self.loaded.config.tokenizer.language
        compiled, phrases = Compiled(None), ()
        if hotwords is not None:
            compiled = compile_hotwords(self.tokenizer, as_hotwords(hotwords), language, max_hotwords=max_hotwords)
        elif phrase_list is not None:
            compiled = compile_grammar(self.tokenizer, list(phrase_list), language, max_phrases=max_hotwords)
            phrases = tuple(compiled.phrases)
        return StreamOptions(compiled.context, max(0, int(alternatives)), phrases, ep), compiled.skipped

    def is_ready(self, stream: Stream) -> bool:
        """Enough audio for one encoder chunk, or the input finished and not yet fully decoded."""
        samples, finished, done = stream.input_state()
        if done:
            return False
        if finished:
            return True
        frames = self.encoder_frames(StreamingLogMel.ready_frames(samples))
        return frames - stream.frames_done >= self.config.chunk_size

    def decode_streams(self, streams: list[Stream]) -> None:
        """Decode the next chunk of every ready stream in ``streams`` with one batched encoder call,
        then search, endpoint checks and (one batched) attention rescoring for segments that end.
        Streams that are not ready are left alone."""
        with self._lock, self.model.inference_mode():
            unique = list({id(s): s for s in streams if not s.done}.values())
            windows = [(s, s.next_window()) for s in unique]
            batch = [(s, n) for s, n in windows if n > 0]
            closing: list[tuple[Stream, bool]] = []
            if batch:
                out, log_probs = self._encode(batch)
                for b, (s, n) in enumerate(batch):
                    rule = s.consumed(n, out[b, :n], log_probs[b, :n])
                    if rule is not None:
                        closing.append((s, rule == "end" or (s.flushed and s.drained)))
            # finished streams with nothing left to decode (e.g. no audio at all)
            closing += [(s, True) for s, n in windows if n == 0 and s.flushed]
            if closing:
                for (s, at_end), best in zip(closing, self._best([s for s, _ in closing])):
                    s.close_segment(best, at_end)

    def _encode(self, batch: list[tuple[Stream, int]]) -> tuple[np.ndarray, np.ndarray]:
        """One chunk of each ``(stream, frames)``; returns encoder out (B, C, d) and CTC log-probs (B, C, V),
        numpy. The caches stay the model's kind (``EncoderCache`` or the ONNX ``ChunkCache``)."""
        x, lengths = pad_batch([s.features(self.window_frames(n)) for s, n in batch])
        caches = [s.cache for s, _ in batch]
        cache = type(caches[0]).stack(caches)
        out, _, cache = self.encoder.forward_chunk(self.model.as_input(x), self.model.as_input(lengths), cache,
                                                   self.config.max_cache_frames)
        for (s, _), c in zip(batch, cache.unstack()):
            s.cache = c
        return to_numpy(out), to_numpy(self.model.ctc(out))

    def _best(self, streams: list[Stream]) -> list[list[CTCHyp]]:
        """The final hypotheses of each stream's open segment, best first: its CTC n-best rescored by
        the attention decoder (one batch for all), or the CTC n-best without rescoring (the best alone
        unless the stream asked for alternatives)."""
        rescoring = [self.config.rescore and s.has_memory for s in streams]
        best = [s.nbest(None if s.options.alternatives > 0 else (self.decode.rescore_nbest or None) if r else 1)
                for s, r in zip(streams, rescoring)]
        todo = [i for i, r in enumerate(rescoring) if r and best[i]]
        if todo:
            memory, lengths = pad_batch([streams[i].segment_memory() for i in todo])
            keep = max(streams[i].options.alternatives for i in todo)
            rescored = self.searcher.rescore(memory, lengths_to_mask(lengths), [best[i] for i in todo], keep)
            for i, r in zip(todo, rescored):
                best[i] = r
        return best

    # ---- convenience
    def transcribe_stream(self, wav: np.ndarray, chunk_samples: int = 1600,
                          sample_rate: int = SAMPLE_RATE, options: StreamOptions | None = None) -> list[Final]:
        """Feed ``wav (samples,)`` to a new stream (with ``options``) in pieces of ``chunk_samples``,
        decoding whenever a chunk is ready, as a live client would; returns the final events in order."""
        if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, (int, np.integer)) or chunk_samples < 1:
            raise UserError(f"transcribe_stream: chunk_samples must be a positive integer, got {chunk_samples!r}")
        wav = _as_samples(wav)
        stream = self.create_stream(options)
        events: list[dict] = []
        for i in range(0, wav.size, chunk_samples):
            stream.accept_waveform(wav[i:i + chunk_samples], sample_rate)
            while self.is_ready(stream):
                self.decode_streams([stream])
            events += stream.pop_events()
        stream.input_finished()
        while not stream.done:
            self.decode_streams([stream])
        events += stream.pop_events()
        return [e for e in events if e["type"] == "final"]
