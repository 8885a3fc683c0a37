"""CTC decoding: greedy, and prefix beam search with an optional word n-gram language model and lexicon,
attention rescoring of the final beams (with an attention beam search's hypotheses as extra candidates), and the
worker processes that run the prefix searches of a batch."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from samba_cli.align import forced_align
from samba_cli.lm import (
    EOS,
    Lexicon,
    NgramLM,
    lm_words,
    load_lexicon,
    load_lm,
    split_finished,
)
from samba_cli.model import SambaASR
from samba_cli.search import DecodeOptions, Hypothesis, attention_logprobs, beam_search_nbest
from samba_cli.stepper import Stepper
from samba_cli.threads import usable_cores

logger = logging.getLogger(__name__)

# ln penalty of a CTC beam whose unfinished word starts no word of the language model's vocabulary
UNK_PREFIX_PENALTY = -10.0
DEFAULT_LM_WEIGHT = 0.5  # language-model weight when neither the options nor the model give one
DEFAULT_WORD_BONUS = 2.0  # word bonus likewise
# score taken off each word outside the LM's vocabulary, likewise (0: the LM's <unk> probability only)
DEFAULT_OOV_PENALTY = 0.0
# CTC beam width with a language model when beam_size is 1 (bundled stage-13 model, default decoding: beam 32 /
# 64 / 128 gave 21.91 / 21.34 / 21.21 % WER on dev-heldout, 21.93 / 21.34 % on test)
LM_BEAM_SIZE = 64
CTC_TOKEN_MIN_LOGPROB = -8.0  # CTC beam search extends a hypothesis only by tokens at least this likely
CTC_TOKENS_PER_FRAME = 16  # ... and by at most this many per frame
# attention rescoring reranks this many of the best final CTC beams: each costs a teacher-forced decoder pass
# (bundled stage-8 model on dev-heldout, beam 32, weight 1.0: 16 beams 26.15 % WER, all 32 26.02 %, none 27.55 %)
RESCORE_BEAMS = 16


def ctc_greedy(log_probs: torch.Tensor, length: int, blank_id: int) -> Hypothesis:
    """log_probs: (S, V + 1) CTC log-posteriors of one segment -> collapsed best path."""
    lp, best = log_probs[:length].float().max(dim=-1)
    tokens, logps = [], []
    prev = blank_id
    for tok, p in zip(best.tolist(), lp.tolist(), strict=True):
        if tok != blank_id and tok != prev:
            tokens.append(tok)
            logps.append(p)
        prev = tok
    return Hypothesis(tuple(tokens), tuple(logps), sum(logps))


@dataclass(slots=True)
class _Prefix:
    """One CTC beam: a token prefix, its blank/non-blank path log-probabilities and its language-model score."""

    tokens: tuple[int, ...]
    blank: float = -math.inf  # ln P(prefix, path ends in blank)
    label: float = -math.inf  # ln P(prefix, path ends in its last token)
    lm_score: float = 0.0  # weighted LM log-probability of the finished words + word bonuses
    lm_state: tuple[str, ...] = ()
    partial: str = ""  # text of the unfinished last word
    penalty: float = 0.0  # UNK_PREFIX_PENALTY while that word begins no vocabulary word, else 0

    @property
    def acoustic(self) -> float:
        return _logaddexp(self.blank, self.label)


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


class CTCPrefixScorer:
    """The word-level part of CTC beam search: which tokens start words, and the LM score of finished words."""

    def __init__(
        self,
        pieces: list[str],
        lm: NgramLM | None = None,
        lm_weight: float = DEFAULT_LM_WEIGHT,
        word_bonus: float = DEFAULT_WORD_BONUS,
        oov_penalty: float = DEFAULT_OOV_PENALTY,
        lexicon: Lexicon | None = None,
        lexicon_penalty: float = 0.0,
    ) -> None:
        self.starts = [p.startswith("\u2581") for p in pieces]
        self.text = [
            p.lstrip("\u2581") if not (p.startswith("<") and p.endswith(">")) else "" for p in pieces
        ]
        self.lm, self.lm_weight, self.word_bonus = lm, lm_weight, word_bonus
        self.oov_penalty = oov_penalty
        self.lexicon, self.lexicon_penalty = lexicon, lexicon_penalty
        self._split: dict[str, tuple[str, str]] = {}  # split_finished, memoised: beams share their text
        self._penalty: dict[str, float] = {}  # an unfinished word's penalty, likewise

    def start(self) -> tuple[str, ...]:
        return self.lm.start() if self.lm is not None else ()

    def _finish_word(self, prefix: _Prefix, word: str) -> tuple[float, tuple[str, ...]]:
        score, state = prefix.lm_score, prefix.lm_state
        for w in lm_words(word):
            logp, state = self.lm.score(state, w)
            score += self.lm_weight * logp + self.word_bonus
            if w not in self.lm.vocab:
                in_lexicon = self.lexicon is not None and w in self.lexicon
                score -= self.lexicon_penalty if in_lexicon else self.oov_penalty
        return score, state

    def _spellable(self, word: str) -> bool:
        """Whether some word of the LM's vocabulary or of the lexicon starts with ``word``."""
        return self.lm.is_prefix(word) or (self.lexicon is not None and self.lexicon.is_prefix(word))

    def extend(self, prefix: _Prefix, token: int) -> _Prefix:
        """The new beam ``prefix`` + ``token`` (with empty path probabilities)."""
        tokens = (*prefix.tokens, token)
        if self.lm is None:
            return _Prefix(tokens)
        if self.starts[token]:
            score, state = self._finish_word(prefix, prefix.partial)
            partial = self.text[token]
        else:
            # words that punctuation inside the word piece string has finished ("it," + "vene") are scored now,
            # so that hypotheses cannot glue words together to put off their language-model cost
            text = prefix.partial + self.text[token]
            split = self._split.get(text)
            if split is None:
                split = self._split[text] = split_finished(text)
            finished, partial = split
            score, state = (
                self._finish_word(prefix, finished) if finished else (prefix.lm_score, prefix.lm_state)
            )
        penalty = self._penalty.get(partial)
        if penalty is None:
            words = lm_words(partial)
            penalty = UNK_PREFIX_PENALTY if words and not self._spellable(words[-1]) else 0.0
            self._penalty[partial] = penalty
        return _Prefix(tokens, lm_score=score, lm_state=state, partial=partial, penalty=penalty)

    def rank(self, prefix: _Prefix) -> float:
        """Search score of an unfinished beam: acoustic + LM, with a penalty for an impossible partial word."""
        return prefix.acoustic + prefix.lm_score + prefix.penalty

    def final(self, prefix: _Prefix) -> float:
        """Score of a finished beam: its last word and the end of the sentence are scored."""
        if self.lm is None:
            return prefix.acoustic
        score, state = self._finish_word(prefix, prefix.partial)
        logp, _ = self.lm.score(state, EOS)
        return prefix.acoustic + score + self.lm_weight * logp


def ctc_nbest(
    log_probs: torch.Tensor, length: int, blank_id: int, beam_size: int, scorer: CTCPrefixScorer
) -> list[tuple[float, tuple[int, ...]]]:
    """CTC prefix beam search over the first ``length`` frames of ``log_probs`` (S, V + 1), with the word-level
    scores of ``scorer`` (a language model, if it has one) added at each word boundary: the final beams as
    (score, tokens), best first."""
    lp = log_probs[:length].float().cpu()
    top_lp, top_ids = lp.topk(min(CTC_TOKENS_PER_FRAME, lp.shape[-1]), dim=-1)
    beams = {(): _Prefix((), blank=0.0, lm_state=scorer.start())}
    # each beam's extensions, scored once while it stays a beam (the word-level part depends on tokens only)
    made: dict[tuple[int, ...], dict[int, _Prefix]] = {}
    for t in range(lp.shape[0]):
        blank_lp = float(lp[t, blank_id])
        cands = [
            (tok, p)
            for tok, p in zip(top_ids[t].tolist(), top_lp[t].tolist(), strict=True)
            if tok != blank_id and p >= CTC_TOKEN_MIN_LOGPROB
        ]
        nxt: dict[tuple[int, ...], _Prefix] = {}
        for prefix in beams.values():
            total = prefix.acoustic
            same = _slot(nxt, beams, prefix.tokens, lambda p=prefix: p)  # always known: beams holds it
            same.blank = _logaddexp(same.blank, total + blank_lp)
            last = prefix.tokens[-1] if prefix.tokens else None
            children = made.setdefault(prefix.tokens, {})
            for tok, p in cands:
                ext = _slot(
                    nxt,
                    beams,
                    (*prefix.tokens, tok),
                    lambda parent=prefix, t=tok, c=children: (
                        c.get(t) or c.setdefault(t, scorer.extend(parent, t))
                    ),
                )
                if tok == last:  # a repeat collapses unless a blank separates it
                    same.label = _logaddexp(same.label, prefix.label + p)
                    ext.label = _logaddexp(ext.label, prefix.blank + p)
                else:
                    ext.label = _logaddexp(ext.label, total + p)
        ranked = sorted(nxt.values(), key=scorer.rank, reverse=True)[:beam_size]
        beams = {b.tokens: b for b in ranked}
        made = {key: made[key] for key in beams if key in made}
    return sorted(((scorer.final(b), b.tokens) for b in beams.values()), key=lambda st: st[0], reverse=True)


def ctc_beam_search(
    log_probs: torch.Tensor, length: int, blank_id: int, beam_size: int, scorer: CTCPrefixScorer
) -> Hypothesis:
    """The best beam of :func:`ctc_nbest` as a hypothesis."""
    score, tokens = ctc_nbest(log_probs, length, blank_id, beam_size, scorer)[0]
    return _ctc_hypothesis(log_probs[:length].float().cpu(), tokens, blank_id, score)


def _ctc_hypothesis(
    log_probs: torch.Tensor, tokens: tuple[int, ...], blank_id: int, score: float
) -> Hypothesis:
    return Hypothesis(tokens, tuple(_token_logprobs(log_probs, list(tokens), blank_id)), score)


def _slot(
    nxt: dict[tuple[int, ...], _Prefix],
    beams: dict[tuple[int, ...], _Prefix],
    key: tuple[int, ...],
    make: Callable[[], _Prefix],
) -> _Prefix:
    """The next frame's beam for ``key``, created with empty path probabilities (word state reused if known)."""
    beam = nxt.get(key)
    if beam is None:
        known = beams.get(key) or make()
        beam = nxt[key] = _Prefix(
            key, -math.inf, -math.inf, known.lm_score, known.lm_state, known.partial, known.penalty
        )
    return beam


def _token_logprobs(log_probs: torch.Tensor, tokens: list[int], blank_id: int) -> list[float]:
    """Each token's best CTC log-probability over the frames where the Viterbi alignment emits it."""
    spans = forced_align(log_probs, tokens, blank_id)
    if spans is None:
        return [float(log_probs[:, tok].max()) for tok in tokens]
    return [float(log_probs[s.start : s.end, s.token].max()) for s in spans]


# attention log-probability of each candidate token sequence of one segment (see attention_logprobs)
Rescorer = Callable[[list[tuple[int, ...]]], list[float]]


def sequence_score(
    log_probs: torch.Tensor, length: int, blank_id: int, tokens: tuple[int, ...], scorer: CTCPrefixScorer
) -> float:
    """The score CTC prefix beam search gives ``tokens`` as a final beam: the CTC log-likelihood over the first
    ``length`` frames (all alignments) plus the scorer's word-level scores; -inf when no alignment fits."""
    lp = log_probs[:length].float().cpu()
    if tokens:
        likelihood = -float(
            F.ctc_loss(
                lp.unsqueeze(1),
                torch.tensor([tokens]),
                torch.tensor([lp.shape[0]]),
                torch.tensor([len(tokens)]),
                blank=blank_id,
                reduction="sum",
            )
        )
    else:
        likelihood = float(lp[:, blank_id].sum())
    if likelihood == -math.inf or math.isnan(likelihood):
        return -math.inf
    prefix = _Prefix((), lm_state=scorer.start())
    for token in tokens:
        prefix = scorer.extend(prefix, token)
    prefix.blank = likelihood
    return scorer.final(prefix)


def ctc_search(
    log_probs: torch.Tensor,
    length: int,
    blank_id: int,
    options: DecodeOptions,
    pieces: list[str],
    rescorer: Rescorer | None = None,
    candidates: Sequence[tuple[int, ...]] = (),
) -> Hypothesis:
    """CTC decoding of one segment as ``options`` ask: greedy, or prefix beam search with or without a language
    model (``lm="auto"`` here means none: see :func:`resolve_decoding`). ``pieces``: the tokenizer's pieces by id.
    With a ``rescorer`` and a ``rescore_weight`` above 0, beam search returns the one of its RESCORE_BEAMS best
    final beams, and of the extra ``candidates`` (token sequences, e.g. attention beam search hypotheses, scored
    by :func:`sequence_score`), with the best score + rescore_weight x its attention log-probability."""
    settings = ctc_settings(options)
    if settings.lm is None and settings.beam_size == 1:
        return ctc_greedy(log_probs, length, blank_id)
    rescoring = rescorer is not None and settings.rescore_weight > 0
    beams = ctc_candidates(log_probs, length, blank_id, options, pieces, rescoring, candidates)
    return _choose(log_probs, length, blank_id, settings, beams, rescorer if rescoring else None)


def ctc_candidates(
    log_probs: torch.Tensor | np.ndarray,
    length: int,
    blank_id: int,
    options: DecodeOptions,
    pieces: list[str],
    rescoring: bool = False,
    candidates: Sequence[tuple[int, ...]] = (),
) -> list[tuple[float, tuple[int, ...]]]:
    """The model-free half of CTC beam search, as (score, tokens), best first: the prefix search's final beams;
    with ``rescoring``, its RESCORE_BEAMS best and the extra ``candidates`` CTC can align (scored by
    :func:`sequence_score`). It runs in search worker processes too, so it takes a NumPy array as well."""
    if isinstance(log_probs, np.ndarray):
        log_probs = torch.from_numpy(log_probs)
    settings = ctc_settings(options)
    scorer = (
        CTCPrefixScorer(pieces)
        if settings.lm is None
        else CTCPrefixScorer(
            pieces,
            load_lm(settings.lm),
            settings.lm_weight,
            settings.word_bonus,
            settings.oov_penalty,
            None if settings.lexicon is None else load_lexicon(settings.lexicon),
            settings.lexicon_penalty,
        )
    )
    beams = ctc_nbest(log_probs, length, blank_id, settings.beam_size, scorer)
    if not rescoring:
        return beams
    beams = beams[:RESCORE_BEAMS]
    known = {t for _, t in beams}
    for extra in candidates:
        if extra not in known:
            known.add(extra)
            extra_score = sequence_score(log_probs, length, blank_id, extra, scorer)
            if extra_score > -math.inf:
                beams.append((extra_score, extra))
    return beams


def _choose(
    log_probs: torch.Tensor,
    length: int,
    blank_id: int,
    settings: CTCSettings,
    beams: list[tuple[float, tuple[int, ...]]],
    rescorer: Rescorer | None,
) -> Hypothesis:
    """The best of ``beams`` (best first), reranked by the ``rescorer`` when there is one and a choice."""
    score, tokens = beams[0]
    if rescorer is not None and len(beams) > 1:
        attention = rescorer([t for _, t in beams])
        score, tokens = max(
            ((s + settings.rescore_weight * a, t) for (s, t), a in zip(beams, attention, strict=True)),
            key=lambda st: st[0],
        )
    return _ctc_hypothesis(log_probs[:length].float().cpu(), tokens, blank_id, score)


@dataclass(frozen=True)
class CTCSettings:
    """What CTC decoding runs with: the beam width, and the language model with its weights (None without)."""

    beam_size: int
    lm: str | None = None
    lm_weight: float | None = None
    word_bonus: float | None = None
    oov_penalty: float | None = None
    lexicon: str | None = None
    lexicon_penalty: float | None = None
    rescore_weight: float = 0.0  # attention rescoring of the final beams (beam search only; 0: off)
    attention_beam: int = 0  # attention beam search adding rescoring candidates (with rescoring only; 0: off)


def ctc_settings(options: DecodeOptions) -> CTCSettings:
    """The settings CTC decoding uses with ``options``: the defaults fill what the options leave unset."""
    rescore = options.rescore_weight or 0.0
    if options.lm in (None, "auto"):
        rescore = rescore if options.beam_size > 1 else 0.0
        return CTCSettings(
            options.beam_size,
            rescore_weight=rescore,
            attention_beam=(options.attention_beam or 0) if rescore else 0,
        )

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return CTCSettings(
        options.beam_size if options.beam_size > 1 else LM_BEAM_SIZE,
        options.lm,
        pick(options.lm_weight, DEFAULT_LM_WEIGHT),
        pick(options.word_bonus, DEFAULT_WORD_BONUS),
        pick(options.oov_penalty, DEFAULT_OOV_PENALTY),
        None if options.lexicon == "auto" else options.lexicon,
        None if options.lexicon in (None, "auto") else pick(options.lexicon_penalty, 0.0),
        rescore,
        (options.attention_beam or 0) if rescore else 0,
    )


# a batch of fewer segments is searched in this process: not worth a round trip to the workers
PARALLEL_SEARCH_MIN_SEGMENTS = 2
MAX_AUTO_SEARCH_WORKERS = 4  # what --search-workers 0 (auto) starts at most
WORKER_PARENT_CHECK_SECONDS = 1.0  # how often a search worker checks that its parent still runs
_POOLS: dict[int, ProcessPoolExecutor] = {}
_NO_POOL = False  # set once making a pool has failed


def ctc_decode(
    model: SambaASR,
    segments: list[tuple[torch.Tensor, int, torch.Tensor]],
    options: DecodeOptions,
    pieces: list[str],
    make_stepper: Callable[[torch.Tensor, torch.Tensor], Stepper] | None = None,
) -> list[Hypothesis]:
    """CTC decoding of a batch of segments, each (CTC log-posteriors (S, V + 1), frames to search, encoder states
    (T, D) the attention decoder reads), with attention rescoring and its attention beam search as ``options``
    ask (the beam search runs on all segments at once). With ``search_workers`` above 1 the CTC prefix searches
    (:func:`ctc_candidates`) run in worker processes (:func:`search_pool`) and the rescoring here; the result is
    the same."""
    settings = ctc_settings(options)
    candidates: list[list[tuple[int, ...]]] = [[] for _ in segments]
    if settings.rescore_weight > 0 and settings.attention_beam > 0 and segments:
        states = torch.nn.utils.rnn.pad_sequence([s for _, _, s in segments], batch_first=True)
        lengths = torch.tensor([s.shape[0] for _, _, s in segments], device=states.device)
        seconds = [n * model.config.frame_seconds for _, n, _ in segments]
        max_tokens = [max(1, math.ceil(s * options.max_tokens_per_second)) for s in seconds]
        beam = dataclasses.replace(options, beam_size=settings.attention_beam)
        found = beam_search_nbest(model, states, lengths, max_tokens, beam, make_stepper)
        candidates = [[h.tokens for h in hyps] for hyps in found]
    blank = model.config.blank_id
    searching = not (settings.lm is None and settings.beam_size == 1)
    parallel = searching and options.search_workers > 1 and len(segments) >= PARALLEL_SEARCH_MIN_SEGMENTS
    pool = search_pool(options.search_workers) if parallel else None

    def here() -> list[Hypothesis]:
        return [
            ctc_search(lp, n, blank, options, pieces, partial(attention_logprobs, model, memory), extra)
            for (lp, n, memory), extra in zip(segments, candidates, strict=True)
        ]

    if pool is None:
        return here()
    rescoring = settings.rescore_weight > 0
    jobs = []
    try:
        for (lp, n, _), extra in zip(segments, candidates, strict=True):
            args = (lp[:n].float().cpu().numpy(), n, blank, options, pieces, rescoring, extra)
            jobs.append(pool.submit(ctc_candidates, *args))
        # the rescoring here runs while the workers search: together never more busy threads than cores
        with torch_threads_at_most(max(1, usable_cores() - options.search_workers)):
            return [
                _choose(
                    lp,
                    n,
                    blank,
                    settings,
                    job.result(),
                    partial(attention_logprobs, model, memory) if rescoring else None,
                )
                for (lp, n, memory), job in zip(segments, jobs, strict=True)
            ]
    except BrokenProcessPool as error:  # a worker died or could not start: search here from now on
        _give_up_pools(error)
        return here()
    except BaseException:  # Ctrl-C or a failed search: the batch's other searches are not waited for
        for job in jobs:
            job.cancel()
        raise


@contextlib.contextmanager
def torch_threads_at_most(threads: int) -> Iterator[None]:
    """Within the block torch uses at most ``threads`` CPU threads; its previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _give_up_pools(error: BaseException) -> None:
    """No search workers for the rest of the process (once a pool could not be made, or broke)."""
    global _NO_POOL
    if not _NO_POOL:
        logger.warning("no search workers (%s): CTC searches run in this process", error)
    _NO_POOL = True
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def auto_search_workers() -> int:
    """One search worker per CPU core this process may use, at most MAX_AUTO_SEARCH_WORKERS (1: no pool)."""
    return max(1, min(MAX_AUTO_SEARCH_WORKERS, usable_cores()))


def _search_worker_init(parent: int) -> None:
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_without, args=(parent,), name="samba-parent-watch", daemon=True).start()


def _exit_without(parent: int) -> None:
    """End this worker within WORKER_PARENT_CHECK_SECONDS of process ``parent`` ending, however it ended
    (``kill -9``, the out-of-memory killer): the worker is then someone else's child, and nobody waits for
    its results. (Linux's PR_SET_PDEATHSIG would follow the thread that started the worker, not the process.)"""
    while os.getppid() == parent:
        time.sleep(WORKER_PARENT_CHECK_SECONDS)
    os._exit(1)


def search_pool(workers: int) -> ProcessPoolExecutor | None:
    """The process pool of ``workers`` CTC search workers, created on first use and kept for the process's life.

    Workers are spawned, not forked (a fork of a process holding torch's thread pools or other threads can
    hang), so they import ``__main__`` again: a script that decodes with ``search_workers`` above 1 must guard its
    top-level code with ``if __name__ == "__main__":``, as any multiprocessing program does. Each worker loads the
    language model and lexicon once, on its first search, and ends within a second of the calling process
    ending, however it ends. None (and a warning, once) where the system cannot make
    one (no /dev/shm for its semaphores, for instance) or a pool broke before (a worker died, or could not
    start): the searches then run in the calling process."""
    pool = _POOLS.get(workers)
    if pool is None and not _NO_POOL:
        context = multiprocessing.get_context("spawn")
        try:
            pool = _POOLS[workers] = ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_search_worker_init,
                initargs=(os.getpid(),),
            )
        except (OSError, NotImplementedError, ImportError) as error:
            _give_up_pools(error)
    return pool
