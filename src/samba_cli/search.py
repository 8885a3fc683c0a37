"""Decoding options and the attention decoder's searches: greedy and batched beam search, teacher-forced
scoring of token sequences (attention_logprobs), and how a model folder's metadata fills the options. CTC decoding
is in samba_cli.ctc."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from samba_cli.errors import OptionError
from samba_cli.lm import (
    LEXICON_FILE,
    LM_FILE,
    load_lexicon,
    load_lm,
)
from samba_cli.model import ModelConfig, SambaASR
from samba_cli.stepper import EagerStepper, MakeStepper, Stepper

DECODERS = ("auto", "attention", "ctc")


@dataclass(frozen=True)
class DecodeOptions:
    decoder: str = "auto"  # "attention" (Mamba decoder), "ctc" (CTC, fastest) or "auto" (the model's choice)
    beam_size: int = 1  # 1: greedy (CTC with a language model: LM_BEAM_SIZE); else beam search
    # Word n-gram language model (ARPA file) of CTC decoding. "auto": the model folder's lm.arpa.gz, if any,
    # once resolve_decoding() has seen the folder (unresolved, it means none); None: none.
    lm: str | None = "auto"
    lm_weight: float | None = None  # weight of its ln probabilities; None: the model's value, else 0.5
    word_bonus: float | None = None  # score added per word with a language model; None: the model's, else 2.0
    # score taken off each word outside the language model's vocabulary, on top of its <unk> probability;
    # None: the model's value, else 0
    oov_penalty: float | None = None
    # Word list (one word per line) of spellings accepted beside the LM's vocabulary. "auto": the model folder's
    # lexicon.txt.gz when its language model is used; None: none.
    lexicon: str | None = "auto"
    # score taken off each lexicon word outside the LM's vocabulary, instead of the OOV penalty; None: the
    # model's value, else 0
    lexicon_penalty: float | None = None
    # CTC beam search: weight of the attention decoder's log-probability when it reranks the final beams
    # (attention rescoring); None: the model's value, else 0 (off)
    rescore_weight: float | None = None
    # CTC beam search with attention rescoring: beam width of an attention-decoder beam search whose finished
    # hypotheses join the final CTC beams as rescoring candidates (scored by CTC, the language model and the
    # attention decoder alike); None: the model's value, else 0 (off)
    attention_beam: int | None = None
    length_penalty: float = 1.0  # beam scores are divided by (length ** length_penalty)
    max_tokens_per_second: float = 15.0  # cap on hypothesis length relative to the segment's audio
    max_repeats: int = 4  # an n-gram (n <= 4) repeated this many times in a row ends the hypothesis
    batch_size: int = 16  # segments decoded together
    # processes that run the CTC prefix searches of a batch (spawned once, kept; see search_pool); 1: this one
    search_workers: int = 1
    cuda_graphs: bool = True  # on CUDA, replay the decode step from CUDA graphs (one per batch-size bucket)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if self.decoder == "attention" and (
            self.lm not in (None, "auto") or self.lexicon not in (None, "auto")
        ):
            raise ValueError("a language model or lexicon is used by CTC decoding only: use the ctc decoder")
        if self.rescore_weight is not None and not self.rescore_weight >= 0:
            raise ValueError(f"rescore_weight must be >= 0, got {self.rescore_weight}")
        if self.search_workers < 1:
            raise ValueError(f"search_workers must be at least 1, got {self.search_workers}")
        if self.attention_beam is not None and self.attention_beam < 0:
            raise ValueError(f"attention_beam must be >= 0, got {self.attention_beam}")


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
    make_stepper: MakeStepper | None = None,
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


def beam_search(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_tokens: list[int],
    options: DecodeOptions,
    make_stepper: MakeStepper | None = None,
) -> list[Hypothesis]:
    """Batched beam search: B segments x beam_size hypotheses share one decoder state of batch B * beam."""
    return [hyps[0] for hyps in beam_search_nbest(model, states, lengths, max_tokens, options, make_stepper)]


@torch.inference_mode()
def beam_search_nbest(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_tokens: list[int],
    options: DecodeOptions,
    make_stepper: MakeStepper | None = None,
) -> list[list[Hypothesis]]:
    """:func:`beam_search`, returning each segment's finished hypotheses, best first."""
    cfg = model.config
    batch, beam = states.shape[0], options.beam_size
    device = states.device
    # the beams of a segment share its encoder memory: its cross-attention keys and values are read once per step
    stepper = (make_stepper or partial(EagerStepper, model))(states, lengths, group=beam)
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
        stepper.reorder(origin.view(-1), memory=False)  # beams move within their segment
        tokens = new_tokens.view(-1)
    results = []
    for i in range(batch):
        if not finished[i]:
            for toks, lps in seqs[i]:
                finish(i, toks, lps)
        results.append(sorted(finished[i], key=lambda h: h.score, reverse=True))
    return results


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


# what a model's metadata "lm" entry may set
_TUNED_LM_FIELDS = ("lm_weight", "word_bonus", "oov_penalty", "lexicon_penalty")


def resolve_decoding(options: DecodeOptions, folder: Path, metadata: dict) -> DecodeOptions:
    """``lm="auto"`` replaced by the model folder's language model (None when it has none, or when decoding
    is not CTC), ``lexicon="auto"`` by the folder's lexicon when its language model is used, unset LM weights
    by the model's metadata ``lm`` entry, and an unset ``rescore_weight`` by the metadata's ``rescore_weight``
    (else 0), and an unset ``attention_beam`` likewise by the metadata's ``attention_beam``. The language model
    and the lexicon are loaded (and cached) here; OptionError (a ValueError) for a lexicon without a language
    model."""
    if options.rescore_weight is None:
        options = dataclasses.replace(options, rescore_weight=float(metadata.get("rescore_weight") or 0.0))
    if options.attention_beam is None:
        options = dataclasses.replace(options, attention_beam=int(metadata.get("attention_beam") or 0))
    lm = options.lm
    if lm == "auto":
        found = folder / LM_FILE
        lm = str(found) if options.decoder == "ctc" and found.is_file() else None
    if lm is None:
        if options.lexicon not in (None, "auto"):
            raise OptionError("a lexicon is used with a language model only", "--lexicon")
        return dataclasses.replace(options, lm=None, lexicon=None)
    load_lm(lm)  # a bad language model fails here (one-line SambaError), before any input is read
    own = lm == str(folder / LM_FILE)
    lexicon = options.lexicon
    if lexicon == "auto":
        found = folder / LEXICON_FILE
        lexicon = str(found) if own and found.is_file() else None
    if lexicon is not None:
        load_lexicon(lexicon)  # likewise
    tuned = (metadata.get("lm") or {}) if own else {}
    unset = {name: tuned.get(name) for name in _TUNED_LM_FIELDS if getattr(options, name) is None}
    return dataclasses.replace(options, lm=lm, lexicon=lexicon, **unset)


def decode_segments(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    seconds: list[float],
    options: DecodeOptions,
    make_stepper: MakeStepper | None = None,
) -> list[Hypothesis]:
    """Attention decoding of a batch of segments with the configured search."""
    max_tokens = [max(1, math.ceil(s * options.max_tokens_per_second)) for s in seconds]
    search = greedy_search if options.beam_size == 1 else beam_search
    return search(model, states, lengths, max_tokens, options, make_stepper)
