"""CTC prefix beam search with a word n-gram language model and a lexicon: the model-free half of CTC decoding.

It needs NumPy and the language model only, not torch, so the search worker processes (samba_cli.search_pool)
start in a fraction of a second and stay small. The attention rescoring that picks among its final beams runs
with the model, in samba_cli.ctc.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from samba_cli.lm import EOS, Lexicon, NgramLM, lm_words, load_lexicon, load_lm, split_finished

if TYPE_CHECKING:
    from samba_cli.search import DecodeOptions

# ln penalty of a CTC beam whose unfinished word starts no word of the language model's vocabulary
UNK_PREFIX_PENALTY = -10.0
DEFAULT_LM_WEIGHT = 0.5  # language-model weight when neither the options nor the model give one
DEFAULT_WORD_BONUS = 2.0  # word bonus likewise
# score taken off each word outside the LM's vocabulary, likewise (0: the LM's <unk> probability only)
DEFAULT_OOV_PENALTY = 0.0
# CTC beam width with a language model when beam_size is 1 (bundled stage-13 model, default decoding: beam 32 /
# 64 / 128 gave 21.91 / 21.34 / 21.21 % WER on dev-heldout, 21.93 / 21.34 % on test)
LM_BEAM_SIZE = 64
# CTC beam search extends a hypothesis only by tokens at least this likely (bundled stage-24 model, default
# decoding on dev-heldout: -8 / -6 gave 20.77 / 20.73 % WER, and -6 halves the search time)
CTC_TOKEN_MIN_LOGPROB = -6.0
CTC_TOKENS_PER_FRAME = 16  # ... and by at most this many per frame
# attention rescoring reranks this many of the best final CTC beams: each costs a teacher-forced decoder pass
# (bundled stage-8 model on dev-heldout, beam 32, weight 1.0: 16 beams 26.15 % WER, all 32 26.02 %, none 27.55 %)
RESCORE_BEAMS = 16


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


def _frames(log_probs, length: int) -> np.ndarray:
    """The first ``length`` rows of (S, V + 1) log-posteriors (NumPy, or a CPU tensor) as float32 NumPy."""
    return np.asarray(log_probs[:length], dtype=np.float32)


def _top_tokens(lp: np.ndarray, blank_id: int) -> tuple[list[list[int]], list[list[float]]]:
    """Per frame, the CTC_TOKENS_PER_FRAME most likely tokens, best first, without blank and those under
    CTC_TOKEN_MIN_LOGPROB: (ids, log-probabilities)."""
    k = min(CTC_TOKENS_PER_FRAME, lp.shape[1])
    ids = (
        np.argpartition(-lp, k - 1, axis=1)[:, :k] if k < lp.shape[1] else np.tile(np.arange(k), (len(lp), 1))
    )
    values = np.take_along_axis(lp, ids, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    ids, values = np.take_along_axis(ids, order, axis=1), np.take_along_axis(values, order, axis=1)
    keep = (values >= CTC_TOKEN_MIN_LOGPROB) & (ids != blank_id)
    return (
        [row[mask].tolist() for row, mask in zip(ids, keep, strict=True)],
        [row[mask].tolist() for row, mask in zip(values, keep, strict=True)],
    )


def ctc_nbest(
    log_probs, length: int, blank_id: int, beam_size: int, scorer: CTCPrefixScorer
) -> list[tuple[float, tuple[int, ...]]]:
    """CTC prefix beam search over the first ``length`` frames of ``log_probs`` (S, V + 1), with the word-level
    scores of ``scorer`` (a language model, if it has one) added at each word boundary: the final beams as
    (score, tokens), best first."""
    lp = _frames(log_probs, length)
    top_ids, top_lps = _top_tokens(lp, blank_id)
    blanks = lp[:, blank_id].tolist()
    inf = -math.inf
    beams = {(): _Prefix((), blank=0.0, lm_state=scorer.start())}
    # each beam's extensions, scored once while it stays a beam (the word-level part depends on tokens only)
    made: dict[tuple[int, ...], dict[int, _Prefix]] = {}
    extend, rank = scorer.extend, scorer.rank
    for blank_lp, ids, lps in zip(blanks, top_ids, top_lps, strict=True):
        nxt: dict[tuple[int, ...], _Prefix] = {}
        for key, prefix in beams.items():
            total = _logaddexp(prefix.blank, prefix.label)
            same = nxt.get(key)
            if same is None:
                same = nxt[key] = _Prefix(
                    key, inf, inf, prefix.lm_score, prefix.lm_state, prefix.partial, prefix.penalty
                )
            same.blank = _logaddexp(same.blank, total + blank_lp)
            last = key[-1] if key else None
            children = made.get(key)
            if children is None:
                children = made[key] = {}
            for tok, p in zip(ids, lps, strict=True):
                ext_key = (*key, tok)
                ext = nxt.get(ext_key)
                if ext is None:
                    # the next frame's beam, with empty path probabilities (word state reused when known)
                    known = beams.get(ext_key) or children.get(tok)
                    if known is None:
                        known = children[tok] = extend(prefix, tok)
                    ext = nxt[ext_key] = _Prefix(
                        ext_key, inf, inf, known.lm_score, known.lm_state, known.partial, known.penalty
                    )
                if tok == last:  # a repeat collapses unless a blank separates it
                    same.label = _logaddexp(same.label, prefix.label + p)
                    ext.label = _logaddexp(ext.label, prefix.blank + p)
                else:
                    ext.label = _logaddexp(ext.label, total + p)
        beams = {b.tokens: b for b in heapq.nlargest(beam_size, nxt.values(), key=rank)}
        made = {key: made[key] for key in beams if key in made}
    return sorted(((scorer.final(b), b.tokens) for b in beams.values()), key=lambda st: st[0], reverse=True)


def ctc_log_likelihood(log_probs, tokens: Sequence[int], blank_id: int) -> float:
    """ln P(tokens | log_probs (S, V + 1)) summed over all CTC alignments (the forward algorithm); -inf when no
    alignment fits in S frames."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if not len(tokens):
        return float(lp[:, blank_id].sum())
    labels = np.full(2 * len(tokens) + 1, blank_id, dtype=np.int64)
    labels[1::2] = tokens
    skip = np.zeros(len(labels), dtype=bool)  # state s may be entered from s - 2 (a label, not a repeat)
    skip[2:] = (labels[2:] != blank_id) & (labels[2:] != labels[:-2])
    alpha = np.full(len(labels), -np.inf)
    alpha[:2] = lp[0, labels[:2]]
    shifted = np.empty_like(alpha)
    with np.errstate(invalid="ignore"):  # -inf - -inf inside logaddexp: its result is -inf, as wanted
        for row in lp[1:]:
            shifted[0], shifted[1:] = -np.inf, alpha[:-1]
            stay = np.logaddexp(alpha, shifted)
            shifted[:2], shifted[2:] = -np.inf, np.where(skip[2:], alpha[:-2], -np.inf)
            alpha = np.logaddexp(stay, shifted) + row[labels]
    return float(np.logaddexp(alpha[-1], alpha[-2]))


def sequence_score(
    log_probs, length: int, blank_id: int, tokens: tuple[int, ...], scorer: CTCPrefixScorer
) -> float:
    """The score CTC prefix beam search gives ``tokens`` as a final beam: the CTC log-likelihood over the first
    ``length`` frames (all alignments) plus the scorer's word-level scores; -inf when no alignment fits."""
    likelihood = ctc_log_likelihood(_frames(log_probs, length), tokens, blank_id)
    if likelihood == -math.inf or math.isnan(likelihood):
        return -math.inf
    prefix = _Prefix((), lm_state=scorer.start())
    for token in tokens:
        prefix = scorer.extend(prefix, token)
    prefix.blank = likelihood
    return scorer.final(prefix)


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

    @property
    def greedy(self) -> bool:
        """Best path decoding: no language model and a beam of 1."""
        return self.lm is None and self.beam_size == 1

    def scorer(self, pieces: list[str]) -> CTCPrefixScorer:
        """The word-level scorer of these settings (the language model and lexicon are loaded once per process)."""
        if self.lm is None:
            return CTCPrefixScorer(pieces)
        return CTCPrefixScorer(
            pieces,
            load_lm(self.lm),
            self.lm_weight,
            self.word_bonus,
            self.oov_penalty,
            None if self.lexicon is None else load_lexicon(self.lexicon),
            self.lexicon_penalty,
        )


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


def ctc_candidates(
    log_probs,
    length: int,
    blank_id: int,
    settings: CTCSettings,
    pieces: list[str],
    rescoring: bool = False,
    candidates: Sequence[tuple[int, ...]] = (),
) -> list[tuple[float, tuple[int, ...]]]:
    """The model-free half of CTC beam search, as (score, tokens), best first: the prefix search's final beams;
    with ``rescoring``, its RESCORE_BEAMS best and the extra ``candidates`` CTC can align (scored by
    :func:`sequence_score`). ``log_probs``: (S, V + 1), NumPy or a CPU tensor."""
    lp = _frames(log_probs, length)
    scorer = settings.scorer(pieces)
    beams = ctc_nbest(lp, length, blank_id, settings.beam_size, scorer)
    if not rescoring:
        return beams
    return with_candidates(beams[:RESCORE_BEAMS], lp, length, blank_id, scorer, candidates)


def with_candidates(
    beams: list[tuple[float, tuple[int, ...]]],
    log_probs,
    length: int,
    blank_id: int,
    scorer: CTCPrefixScorer,
    candidates: Sequence[tuple[int, ...]],
) -> list[tuple[float, tuple[int, ...]]]:
    """``beams`` followed by those of the extra ``candidates`` that are not among them and that CTC can align,
    each scored by :func:`sequence_score`."""
    lp = _frames(log_probs, length)
    beams = list(beams)
    known = {t for _, t in beams}
    for extra in candidates:
        if extra not in known:
            known.add(extra)
            extra_score = sequence_score(lp, length, blank_id, extra, scorer)
            if extra_score > -math.inf:
                beams.append((extra_score, extra))
    return beams
