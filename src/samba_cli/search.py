"""Decoding searches over one interface: greedy and beam search with the attention decoder, greedy CTC."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from samba_cli.model import ModelConfig, SambaASR
from samba_cli.stepper import EagerStepper, Stepper

DECODERS = ("auto", "attention", "ctc")


@dataclass(frozen=True)
class DecodeOptions:
    decoder: str = (
        "auto"  # "attention" (Mamba decoder), "ctc" (greedy CTC, fastest) or "auto" (the model's choice)
    )
    beam_size: int = 1  # 1 = greedy
    length_penalty: float = 1.0  # beam scores are divided by (length ** length_penalty)
    max_tokens_per_second: float = 15.0  # cap on hypothesis length relative to the segment's audio
    max_repeats: int = 4  # an n-gram (n <= 4) repeated this many times in a row ends the hypothesis
    batch_size: int = 16  # segments decoded together
    cuda_graphs: bool = True  # on CUDA, replay the decode step from CUDA graphs (one per batch-size bucket)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # text tokens, without bos/eos
    token_logprobs: tuple[float, ...]  # log-probability of each token under the decoder
    score: float  # the search's ranking score (length-normalised for beam search)


def _next_logprobs(stepper: Stepper, tokens: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Log-probabilities of the next token (B, V); bos and pad can never be produced."""
    logits = stepper.step(tokens).float()
    logits[:, [cfg.bos_id, cfg.pad_id]] = -math.inf
    return torch.log_softmax(logits, dim=-1)


def repetition_cut(tokens: list[int], max_repeats: int, max_ngram: int = 4) -> int | None:
    """If the tail of ``tokens`` is an n-gram repeated ``max_repeats`` times, the length to keep (one copy)."""
    for n in range(1, max_ngram + 1):
        span = n * max_repeats
        if len(tokens) < span:
            break
        tail = tokens[-span:]
        gram = tail[-n:]
        if all(tail[i : i + n] == gram for i in range(0, span, n)):
            return len(tokens) - span + n
    return None


@torch.inference_mode()
def greedy_search(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_tokens: list[int],
    options: DecodeOptions,
    make_stepper: Callable[[torch.Tensor, torch.Tensor], Stepper] | None = None,
) -> list[Hypothesis]:
    """states: (B, S, D) encoder frames of B segments, lengths: (B,) -> one hypothesis per segment."""
    cfg = model.config
    batch = states.shape[0]
    stepper = (make_stepper or partial(EagerStepper, model))(states, lengths)
    tokens = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=states.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    logps: list[list[float]] = [[] for _ in range(batch)]
    done = [False] * batch
    for _ in range(max(max_tokens) + 1):
        logprobs = _next_logprobs(stepper, tokens, cfg)
        best_lp, best = logprobs.max(dim=-1)
        tokens = best
        for i, (tok, lp) in enumerate(zip(best.tolist(), best_lp.tolist(), strict=True)):
            if done[i]:
                continue
            if tok == cfg.eos_id or len(out[i]) >= max_tokens[i]:
                done[i] = True
                continue
            out[i].append(tok)
            logps[i].append(lp)
            keep = repetition_cut(out[i], options.max_repeats)
            if keep is not None:
                del out[i][keep:], logps[i][keep:]
                done[i] = True
        if all(done):
            break
    return [Hypothesis(tuple(t), tuple(lp), sum(lp)) for t, lp in zip(out, logps, strict=True)]


@torch.inference_mode()
def beam_search(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_tokens: list[int],
    options: DecodeOptions,
    make_stepper: Callable[[torch.Tensor, torch.Tensor], Stepper] | None = None,
) -> list[Hypothesis]:
    """Batched beam search: B segments x beam_size hypotheses share one decoder state of batch B * beam."""
    cfg = model.config
    batch, beam = states.shape[0], options.beam_size
    device = states.device
    stepper = (make_stepper or partial(EagerStepper, model))(
        states.repeat_interleave(beam, dim=0), lengths.repeat_interleave(beam, dim=0)
    )
    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0.0  # only the first beam is live at the start
    seqs: list[list[tuple[list[int], list[float]]]] = [[([], []) for _ in range(beam)] for _ in range(batch)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    tokens = torch.full((batch * beam,), cfg.bos_id, dtype=torch.long, device=device)
    active = [True] * batch

    def finish(i: int, toks: list[int], lps: list[float]) -> None:
        score = sum(lps) / (max(1, len(toks)) ** options.length_penalty)
        finished[i].append(Hypothesis(tuple(toks), tuple(lps), score))

    for _ in range(max(max_tokens) + 1):
        logprobs = _next_logprobs(stepper, tokens, cfg).view(batch, beam, -1)
        vocab = logprobs.shape[-1]
        cand = (scores.unsqueeze(-1) + logprobs).view(batch, -1)
        top_scores, top_idx = cand.topk(2 * beam, dim=-1)
        new_scores = torch.full_like(scores, -math.inf)
        new_tokens = torch.full((batch, beam), cfg.eos_id, dtype=torch.long, device=device)
        origin = torch.arange(batch * beam, device=device).view(batch, beam).clone()
        new_seqs = [list(s) for s in seqs]
        for i in range(batch):
            if not active[i]:
                continue
            filled = 0
            for sc, idx in zip(top_scores[i].tolist(), top_idx[i].tolist(), strict=True):
                if sc == -math.inf:
                    break
                b, tok = divmod(idx, vocab)
                toks, lps = seqs[i][b]
                lp = float(logprobs[i, b, tok])
                if tok == cfg.eos_id or len(toks) >= max_tokens[i]:
                    finish(i, toks, lps)
                    continue
                ext_t, ext_l = toks + [tok], lps + [lp]
                keep = repetition_cut(ext_t, options.max_repeats)
                if keep is not None:
                    finish(i, ext_t[:keep], ext_l[:keep])
                    continue
                new_seqs[i][filled] = (ext_t, ext_l)
                new_scores[i, filled] = sc
                new_tokens[i, filled] = tok
                origin[i, filled] = i * beam + b
                filled += 1
                if filled == beam:
                    break
            # Like Whisper: a segment is done once beam_size hypotheses have ended.
            if filled == 0 or len(finished[i]) >= beam:
                active[i] = False
        if not any(active):
            break
        seqs = new_seqs
        scores = new_scores
        stepper.reorder(origin.view(-1))
        tokens = new_tokens.view(-1)
    results = []
    for i in range(batch):
        if not finished[i]:
            for toks, lps in seqs[i]:
                finish(i, toks, lps)
        results.append(max(finished[i], key=lambda h: h.score))
    return results


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


def decode_segments(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    seconds: list[float],
    options: DecodeOptions,
    make_stepper: Callable[[torch.Tensor, torch.Tensor], Stepper] | None = None,
) -> list[Hypothesis]:
    """Attention decoding of a batch of segments with the configured search."""
    max_tokens = [max(1, math.ceil(s * options.max_tokens_per_second)) for s in seconds]
    search = greedy_search if options.beam_size == 1 else beam_search
    return search(model, states, lengths, max_tokens, options, make_stepper)
