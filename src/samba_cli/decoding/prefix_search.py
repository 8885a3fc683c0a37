"""CTC prefix beam search with a word n-gram language model and a lexicon: the model-free half of CTC decoding.

It needs NumPy and the language model only, not torch, so the search worker processes (samba_cli.decoding.pool)
start in a fraction of a second and stay small. The attention rescoring that picks among its final beams runs
with the model, in samba_cli.decoding.ctc.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samba_cli.decoding.lm import EOS, Lexicon, NgramLM, lm_words, load_lexicon, load_lm, split_finished
from samba_cli.options import (
    DEFAULT_LEXICON_PENALTY,
    DEFAULT_LM_WEIGHT,
    DEFAULT_OOV_PENALTY,
    DEFAULT_WORD_BONUS,
    ResolvedCTC,
)

# ln penalty of a CTC beam whose unfinished word starts no word of the language model's vocabulary
UNK_PREFIX_PENALTY = -10.0
# CTC beam search extends a hypothesis only by tokens at least this likely (as accurate as -8 on the bundled model's
# dev set, in half the search time: docs/bench/history/benchmarks-log.md)
CTC_TOKEN_MIN_LOGPROB = -6.0
CTC_TOKENS_PER_FRAME = 16  # ... and by at most this many per frame
# attention rescoring reranks this many of the best final CTC beams: each costs a teacher-forced decoder pass, and
# reranking all 32 beams of a beam-32 search was no more accurate than the best 16
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


def _search_score(blank: float, label: float, word: _Prefix) -> float:
    """:meth:`CTCPrefixScorer.rank` of a beam with these path log-probabilities and ``word``'s word-level state."""
    return _logaddexp(blank, label) + word.lm_score + word.penalty


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
        lexicon_penalty: float = DEFAULT_LEXICON_PENALTY,
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
        # (LM state, finished text) -> the terms _finish_word adds and subtracts, in order, and the state after
        self._words: dict[tuple[tuple[str, ...], str], tuple[tuple[float, ...], tuple[str, ...]]] = {}

    def start(self) -> tuple[str, ...]:
        return self.lm.start() if self.lm is not None else ()

    def _finish_word(self, prefix: _Prefix, word: str) -> tuple[float, tuple[str, ...]]:
        """The LM score and state after ``word`` (the text of one or more finished words) follows ``prefix``. The
        terms depend on the LM state and the text only, so they are memoised and added to the prefix's score one
        by one, in the same order: the same floating-point result as scoring the words afresh."""
        key = (prefix.lm_state, word)
        known = self._words.get(key)
        if known is None:
            terms: list[float] = []  # a penalty as its negative: x - p == x + (-p) exactly
            state = prefix.lm_state
            for w in lm_words(word):
                logp, state = self.lm.score(state, w)
                terms.append(self.lm_weight * logp + self.word_bonus)
                if w not in self.lm.vocab:
                    in_lexicon = self.lexicon is not None and w in self.lexicon
                    terms.append(-(self.lexicon_penalty if in_lexicon else self.oov_penalty))
            known = self._words[key] = (tuple(terms), state)
        score = prefix.lm_score
        for term in known[0]:
            score += term
        return score, known[1]

    def _spellable(self, word: str) -> bool:
        """Whether some word of the LM's vocabulary or of the lexicon starts with ``word``."""
        return self.lm.is_prefix(word) or (self.lexicon is not None and self.lexicon.is_prefix(word))

    def extend(self, prefix: _Prefix, token: int) -> _Prefix:
        """The new beam ``prefix`` + ``token`` (with empty path probabilities)."""
        beam = self.word_state(prefix, token)
        beam.tokens = (*prefix.tokens, token)
        return beam

    def word_state(self, prefix: _Prefix, token: int) -> _Prefix:
        """The word-level part of ``prefix`` + ``token`` (LM score and state, unfinished word, its penalty), with
        empty tokens and path probabilities: :meth:`extend` without copying the token sequence."""
        if self.lm is None:
            return _Prefix(())
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
        return _Prefix((), lm_score=score, lm_state=state, partial=partial, penalty=penalty)

    def rank(self, prefix: _Prefix) -> float:
        """Search score of an unfinished beam: acoustic + LM, with a penalty for an impossible partial word."""
        return _search_score(prefix.blank, prefix.label, prefix)

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
    (score, tokens), best first.

    The loop runs once per beam, candidate token and frame, so it is kept lean: a prefix is a node number in a
    trie of the prefixes seen (not a token tuple, whose hashing grows with its length), and a beam is a plain list
    ``[blank, label, word]``: its path log-probabilities and its word-level state (:meth:`CTCPrefixScorer.
    word_state`, computed once per node). The arithmetic and its order are those of the textbook recursion."""
    lp = _frames(log_probs, length)
    top_ids, top_lps = _top_tokens(lp, blank_id)
    blanks = lp[:, blank_id].tolist()
    inf = -math.inf
    # the trie, per node (0 is the empty prefix): its parent, last token, children by token and word-level state
    parent: list[int] = [-1]
    last_token: list[int | None] = [None]
    children: list[dict[int, int]] = [{}]
    words: list[_Prefix | None] = [_Prefix((), blank=0.0, lm_state=scorer.start())]
    beams: dict[int, list] = {0: [0.0, inf, words[0]]}
    word_state = scorer.word_state
    for blank_lp, ids, lps in zip(blanks, top_ids, top_lps, strict=True):
        nxt: dict[int, list] = {}
        for node, (b, lab, word) in beams.items():
            total = _logaddexp(b, lab)
            same = nxt.get(node)
            if same is None:
                # nothing else adds to a beam's blank path in a frame: logaddexp(-inf, x) is x
                same = nxt[node] = [total + blank_lp, inf, word]
            else:
                same[0] = total + blank_lp
            last = last_token[node]
            kids = children[node]
            for tok, p in zip(ids, lps, strict=True):
                ext_node = kids.get(tok)
                if ext_node is None:
                    ext_node = kids[tok] = len(parent)
                    parent.append(node)
                    last_token.append(tok)
                    children.append({})
                    words.append(None)
                ext = nxt.get(ext_node)
                if ext is None:  # the next frame's beam, with empty path probabilities
                    state = words[ext_node]
                    if state is None:
                        state = words[ext_node] = word_state(word, tok)
                    ext = nxt[ext_node] = [inf, inf, state]
                if tok == last:  # a repeat collapses unless a blank separates it
                    same[1] = _logaddexp(same[1], lab + p)
                    ext[1] = _logaddexp(ext[1], b + p)
                else:
                    ext[1] = _logaddexp(ext[1], total + p)
        beams = dict(heapq.nlargest(beam_size, nxt.items(), key=_rank_item))
    finals = []
    for node, (b, lab, word) in beams.items():
        tokens = []
        while node:
            tokens.append(last_token[node])
            node = parent[node]
        beam = _Prefix(
            tuple(reversed(tokens)), b, lab, word.lm_score, word.lm_state, word.partial, word.penalty
        )
        finals.append((scorer.final(beam), beam.tokens))
    return sorted(finals, key=lambda st: st[0], reverse=True)


def _rank_item(item: tuple[int, list]) -> float:
    """The search score of a beam of :func:`ctc_nbest`, (node, [blank, label, word state])."""
    return _search_score(*item[1])


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


def ctc_candidates(
    log_probs,
    length: int,
    blank_id: int,
    beam_size: int,
    ctc: ResolvedCTC,
    pieces: list[str],
    rescoring: bool = False,
    candidates: Sequence[tuple[int, ...]] = (),
) -> list[tuple[float, tuple[int, ...]]]:
    """The model-free half of CTC beam search of width ``beam_size`` with the language model of ``ctc``, as (score,
    tokens), best first: the prefix search's final beams; with ``rescoring``, its RESCORE_BEAMS best and the
    extra ``candidates`` CTC can align (:func:`with_candidates`). ``log_probs``: (S, V + 1), NumPy or a CPU
    tensor."""
    lp = _frames(log_probs, length)
    scorer = make_scorer(ctc, pieces)
    beams = ctc_nbest(lp, length, blank_id, beam_size, scorer)
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


def make_scorer(ctc: ResolvedCTC, pieces: list[str]) -> CTCPrefixScorer:
    """The word-level scorer of CTC decoding's resolved options; the language model and lexicon are loaded once
    per process."""
    if ctc.lm is None:
        return CTCPrefixScorer(pieces)
    return CTCPrefixScorer(
        pieces,
        load_lm(ctc.lm),
        ctc.lm_weight,
        ctc.word_bonus,
        ctc.oov_penalty,
        None if ctc.lexicon is None else load_lexicon(ctc.lexicon),
        ctc.lexicon_penalty,
    )
