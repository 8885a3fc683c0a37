"""CTC forced alignment (Viterbi) of decoded tokens on a segment's CTC posteriors -> word start/end times."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenSpan:
    token: int  # token id
    start: int  # first encoder frame where the token is emitted
    end: int  # one past its last emitting frame


@dataclass(frozen=True)
class WordSpan:
    tokens: tuple[int, ...]  # token ids of the word
    start: float  # frames (fractional when spread without an alignment)
    end: float
    logprob: float  # mean token log-probability of the word


def forced_align(log_probs: torch.Tensor, tokens: list[int], blank_id: int) -> list[TokenSpan] | None:
    """Viterbi CTC alignment. log_probs: (T, V + 1); returns one span per token, or None when T is too short.

    The path runs over the extended label sequence [blank, t1, blank, t2, ..., blank]; it may skip a blank
    between two different tokens but must pass through one between repeated tokens.
    """
    frames = log_probs.shape[0]
    if not tokens:
        return []
    repeats = sum(1 for a, b in zip(tokens, tokens[1:], strict=False) if a == b)
    if frames < len(tokens) + repeats:
        return None
    labels = [blank_id]
    for tok in tokens:
        labels += [tok, blank_id]
    n = len(labels)
    lp = log_probs.float().cpu()
    label_idx = torch.tensor(labels)
    emit = lp[:, label_idx]  # (T, n)
    lab = torch.tensor(labels)
    can_skip = torch.zeros(n, dtype=torch.bool)
    can_skip[2:] = (lab[2:] != blank_id) & (lab[2:] != lab[:-2])

    neg = -math.inf
    score = torch.full((n,), neg)
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = torch.zeros(frames, n, dtype=torch.long)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, frames):
        prev1 = torch.cat([torch.tensor([neg]), score[:-1]])
        prev2 = torch.cat([torch.tensor([neg, neg]), score[:-2]])
        prev2 = torch.where(can_skip, prev2, torch.tensor(neg))
        stacked = torch.stack([score, prev1, prev2])  # (3, n)
        best, arg = stacked.max(dim=0)
        back[t] = arg
        score = best + emit[t]
    end_state = n - 1 if score[n - 1] >= score[n - 2] else n - 2
    if score[end_state] == neg:
        return None
    path = [0] * frames
    s = end_state
    for t in range(frames - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    spans: dict[int, list[int]] = {}
    for t, s in enumerate(path):
        if s % 2 == 1:
            spans.setdefault(s // 2, []).append(t)
    return [TokenSpan(tok, spans[i][0], spans[i][-1] + 1) for i, tok in enumerate(tokens)]


def group_words(
    tokens: list[int], starts_word: list[bool], spoken: list[bool] | None = None
) -> list[tuple[list[int], list[int]]]:
    """Split token positions into words: a word starts at a token whose piece begins with the space mark.

    ``spoken`` marks the tokens that carry sound (not punctuation only). A word of punctuation only is not a
    word of its own: it joins the word before it (or, at the start, the word after it).
    """
    words: list[tuple[list[int], list[int]]] = []
    for i, tok in enumerate(tokens):
        if starts_word[i] or not words:
            words.append(([], []))
        words[-1][0].append(tok)
        words[-1][1].append(i)
    if spoken is None:
        return words
    merged: list[tuple[list[int], list[int]]] = []
    for toks, pos in words:
        if merged and not any(spoken[p] for p in pos):
            merged[-1][0].extend(toks)
            merged[-1][1].extend(pos)
        elif merged and not any(spoken[p] for p in merged[-1][1]):
            merged[-1] = (merged[-1][0] + toks, merged[-1][1] + pos)
        else:
            merged.append((list(toks), list(pos)))
    return merged


def word_spans(
    tokens: list[int],
    logprobs: list[float],
    starts_word: list[bool],
    log_probs: torch.Tensor | None,
    blank_id: int,
    tail_frames: int = 5,
    spoken: list[bool] | None = None,
    seconds: Callable[[float], float] | None = None,
    split_seconds: float = math.inf,
    aligned: list[TokenSpan] | None = None,
) -> list[WordSpan]:
    """Word timings in frames of the segment, from the CTC alignment when possible.

    A word runs from its first token's first frame to its last spoken token's last frame, extended by up to
    ``tail_frames`` into the following blank frames (CTC emissions are spiky) but never into the next word.
    ``spoken`` (default: every token) marks the tokens that carry sound: punctuation is often emitted after
    the pause that follows a word, just before the next one, so it is part of the word's text but not of its
    time. ``seconds`` maps a frame to source seconds: a word whose sounding tokens are ``split_seconds`` or
    more apart there (a model may glue the last word before a pause to the first one after it) becomes two
    words at that pause. Without posteriors, or when they are too short to align, words are spread over the
    segment in proportion to their token counts. ``aligned``: the tokens' alignment on ``log_probs`` when the
    search made it already (else it is made here).
    """
    groups = group_words(tokens, starts_word, spoken)
    if not groups:
        return []
    if aligned is None and log_probs is not None:
        aligned = forced_align(log_probs, tokens, blank_id)
    spans: list[WordSpan] = []
    if aligned is None:
        total = log_probs.shape[0] if log_probs is not None else len(tokens)
        per_token = total / max(1, len(tokens))
        for toks, pos in groups:
            lp = sum(logprobs[p] for p in pos) / len(pos)
            spans.append(WordSpan(tuple(toks), pos[0] * per_token, (pos[-1] + 1) * per_token, lp))
        return spans
    if seconds is not None:
        groups = _split_at_silences(groups, aligned, spoken, seconds, split_seconds)
    sounding = [[p for p in pos if spoken is None or spoken[p]] or pos for _, pos in groups]
    for k, (toks, pos) in enumerate(groups):
        start = aligned[sounding[k][0]].start
        end = aligned[sounding[k][-1]].end
        limit = aligned[sounding[k + 1][0]].start if k + 1 < len(groups) else log_probs.shape[0]
        end = max(end, min(end + tail_frames, limit))
        lp = sum(logprobs[p] for p in pos) / len(pos)
        spans.append(WordSpan(tuple(toks), float(start), float(end), lp))
    return spans


def _split_at_silences(
    groups: list[tuple[list[int], list[int]]],
    aligned: list[TokenSpan],
    spoken: list[bool] | None,
    seconds: Callable[[float], float],
    split_seconds: float,
) -> list[tuple[list[int], list[int]]]:
    """Words split where two consecutive sounding tokens are ``split_seconds`` or more apart in source time."""
    out: list[tuple[list[int], list[int]]] = []
    for toks, pos in groups:
        part: tuple[list[int], list[int]] = ([], [])
        last_end: int | None = None
        for tok, p in zip(toks, pos, strict=True):
            sounds = spoken is None or spoken[p]
            gap = seconds(aligned[p].start) - seconds(last_end) if sounds and last_end is not None else 0.0
            if part[1] and gap >= split_seconds:
                out.append(part)
                part = ([], [])
            part[0].append(tok)
            part[1].append(p)
            if sounds:
                last_end = aligned[p].end
        out.append(part)
    return out
