"""The attention decoder's searches, free of options: greedy and batched beam search, and teacher-forced scoring
of token sequences (attention_logprobs). CTC decoding is in samba_cli.decoding.ctc."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from samba_cli.align import TokenSpan
from samba_cli.decoding.stepper import EagerStepper, MakeStepper, Stepper
from samba_cli.model import ModelConfig, SambaASR
from samba_cli.options import ResolvedDecode


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # text tokens, without bos/eos
    token_logprobs: tuple[float, ...]  # log-probability of each token under the decoder
    score: float  # the search's ranking score (length-normalised for beam search)
    # the attention decoder's log-probability of eos after the tokens, when a beam search ended them so
    end_logprob: float | None = None
    # the tokens' CTC alignment on the segment's posteriors, when the search made one (CTC decoding): word times
    # are read from it instead of aligning again
    alignment: tuple[TokenSpan, ...] | None = None


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
    *,
    max_repeats: int,
    make_stepper: MakeStepper | None = None,
) -> list[Hypothesis]:
    """states: (B, S, D) encoder frames of B segments, lengths: (B,) -> one hypothesis per segment, at most
    ``max_tokens`` long each; an n-gram repeated ``max_repeats`` times in a row ends a hypothesis (one copy
    kept)."""
    cfg = model.config
    batch = states.shape[0]
    stepper = (make_stepper or partial(EagerStepper, model))(states, lengths)
    tokens = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=states.device)
    out: list[list[int]] = [[] for _ in range(batch)]
    logps: list[list[float]] = [[] for _ in range(batch)]
    live = list(range(batch))  # the segments still decoded, by their row in the stepper
    for _ in range(max(max_tokens) + 1):
        logprobs = _next_logprobs(stepper, tokens, cfg)
        best_lp, best = logprobs.max(dim=-1)
        keep = []
        for row, (i, tok, lp) in enumerate(zip(live, best.tolist(), best_lp.tolist(), strict=True)):
            if tok == cfg.eos_id or len(out[i]) >= max_tokens[i]:
                continue
            out[i].append(tok)
            logps[i].append(lp)
            cut = repetition_cut(out[i], max_repeats)
            if cut is not None:
                del out[i][cut:], logps[i][cut:]
                continue
            keep.append(row)
        if not keep:
            break
        tokens = best
        if len(keep) < len(live):  # finished segments leave the batch
            index = torch.tensor(keep, device=states.device)
            stepper.keep(index)
            tokens = best.index_select(0, index)
            live = [live[row] for row in keep]
    return [Hypothesis(tuple(t), tuple(lp), sum(lp)) for t, lp in zip(out, logps, strict=True)]


def beam_search(*args, **kwargs) -> list[Hypothesis]:
    """:func:`beam_search_nbest` (same arguments), the best hypothesis of each segment."""
    return [hyps[0] for hyps in beam_search_nbest(*args, **kwargs)]


@torch.inference_mode()
def beam_search_nbest(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_tokens: list[int],
    *,
    beam_size: int,
    length_penalty: float,
    max_repeats: int,
    make_stepper: MakeStepper | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search: B segments x ``beam_size`` hypotheses share one decoder state of batch B * beam; each
    segment's finished hypotheses, best first. Scores are divided by (length ** ``length_penalty``);
    ``max_repeats`` as for :func:`greedy_search`."""
    cfg = model.config
    batch, beam = states.shape[0], beam_size
    device = states.device
    # the beams of a segment share its encoder memory: its cross-attention keys and values are read once per step
    stepper = (make_stepper or partial(EagerStepper, model))(states, lengths, group=beam)
    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0.0  # only the first beam is live at the start
    seqs: list[list[tuple[list[int], list[float]]]] = [[([], []) for _ in range(beam)] for _ in range(batch)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    tokens = torch.full((batch * beam,), cfg.bos_id, dtype=torch.long, device=device)

    def finish(i: int, toks: list[int], lps: list[float], end: float | None = None) -> None:
        score = sum(lps) / (max(1, len(toks)) ** length_penalty)
        finished[i].append(Hypothesis(tuple(toks), tuple(lps), score, end))

    live = list(range(batch))  # the segments still searched, by their position in the stepper
    for _ in range(max(max_tokens) + 1):
        rows = len(live)
        logprobs = _next_logprobs(stepper, tokens, cfg).view(rows, beam, -1)
        vocab = logprobs.shape[-1]
        cand = (scores.unsqueeze(-1) + logprobs).view(rows, -1)
        top_scores, top_idx = cand.topk(2 * beam, dim=-1)
        top_lps = logprobs.view(rows, -1).gather(1, top_idx)
        # the bookkeeping in Python lists, turned into tensors once per step
        new_scores = [[-math.inf] * beam for _ in range(rows)]
        new_tokens = [[cfg.eos_id] * beam for _ in range(rows)]
        origin = list(range(rows * beam))
        new_seqs = [list(s) for s in seqs]
        keep = []
        for row, (i, row_scores, row_idx, row_lps) in enumerate(
            zip(live, top_scores.tolist(), top_idx.tolist(), top_lps.tolist(), strict=True)
        ):
            filled = 0
            for sc, idx, lp in zip(row_scores, row_idx, row_lps, strict=True):
                if sc == -math.inf:
                    break
                b, tok = divmod(idx, vocab)
                toks, lps = seqs[row][b]
                if tok == cfg.eos_id or len(toks) >= max_tokens[i]:
                    finish(i, toks, lps, lp if tok == cfg.eos_id else None)
                    continue
                ext_t, ext_l = toks + [tok], lps + [lp]
                cut = repetition_cut(ext_t, max_repeats)
                if cut is not None:
                    finish(i, ext_t[:cut], ext_l[:cut])
                    continue
                new_seqs[row][filled] = (ext_t, ext_l)
                new_scores[row][filled] = sc
                new_tokens[row][filled] = tok
                origin[row * beam + filled] = row * beam + b
                filled += 1
                if filled == beam:
                    break
            # Like Whisper: a segment is done once beam_size hypotheses have ended.
            if filled and len(finished[i]) < beam:
                keep.append(row)
            elif not finished[i]:  # no beam could go on and none ended: the beams so far
                for toks, lps in seqs[row]:
                    finish(i, toks, lps)
        if not keep:
            break
        seqs = [new_seqs[row] for row in keep]
        scores = torch.tensor([new_scores[row] for row in keep], device=device)
        tokens = torch.tensor([new_tokens[row] for row in keep], dtype=torch.long, device=device).view(-1)
        stepper.reorder(torch.tensor(origin, device=device), memory=False)  # beams move within their segment
        if len(keep) < rows:  # finished segments leave the batch
            stepper.keep(torch.tensor(keep, device=device))
            live = [live[row] for row in keep]
    for row, i in enumerate(live):
        if not finished[i]:
            for toks, lps in seqs[row]:
                finish(i, toks, lps)
    return [sorted(hyps, key=lambda h: h.score, reverse=True) for hyps in finished]


@torch.no_grad()
def attention_logprobs(
    model: SambaASR, states: torch.Tensor, candidates: list[tuple[int, ...]]
) -> list[float]:
    """Log-probability of each token sequence (bos ... eos) under the attention decoder, teacher-forced on one
    segment's encoder states (S, D); bos and pad are never produced, as in the attention searches."""
    cfg = model.config
    width = max(len(c) for c in candidates) + 1
    inputs = torch.full((len(candidates), width), cfg.pad_id, dtype=torch.long)
    targets = torch.full((len(candidates), width), cfg.pad_id, dtype=torch.long)
    for row, tokens in enumerate(candidates):
        inputs[row, : len(tokens) + 1] = torch.tensor([cfg.bos_id, *tokens])
        targets[row, : len(tokens) + 1] = torch.tensor([*tokens, cfg.eos_id])
    inputs, targets = inputs.to(states.device), targets.to(states.device)
    lengths = torch.tensor([states.shape[0]], device=states.device)
    logits = model.decode(inputs, states.unsqueeze(0), lengths).float()  # one memory shared by all rows
    logits[..., [cfg.bos_id, cfg.pad_id]] = -math.inf
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    valid = (
        torch.arange(width, device=states.device)[None, :]
        <= torch.tensor([len(c) for c in candidates], device=states.device)[:, None]
    )
    return logp.masked_fill(~valid, 0.0).sum(-1).tolist()


def search_segments(
    model: SambaASR,
    segments: list[tuple[torch.Tensor, int]],
    beam_size: int,
    options: ResolvedDecode,
    make_stepper: MakeStepper | None = None,
) -> list[list[Hypothesis]]:
    """Attention decoding of segments, each (encoder states (T, D) the decoder reads, frames of the segment
    itself), batched: greedy for ``beam_size`` 1 (one hypothesis each), else beam search (the finished ones, best
    first); a hypothesis is at most ``max_tokens_per_second`` times the segment's seconds long."""
    states = torch.nn.utils.rnn.pad_sequence([s for s, _ in segments], batch_first=True)
    lengths = torch.tensor([s.shape[0] for s, _ in segments], device=states.device)
    per_second = options.max_tokens_per_second * model.config.frame_seconds
    max_tokens = [max(1, math.ceil(frames * per_second)) for _, frames in segments]
    if beam_size == 1:
        found = greedy_search(
            model, states, lengths, max_tokens, max_repeats=options.max_repeats, make_stepper=make_stepper
        )
        return [[hyp] for hyp in found]
    return beam_search_nbest(
        model,
        states,
        lengths,
        max_tokens,
        beam_size=beam_size,
        length_penalty=options.length_penalty,
        max_repeats=options.max_repeats,
        make_stepper=make_stepper,
    )
