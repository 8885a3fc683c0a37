"""Decoding options and how they are resolved (DecodeOptions.resolve: the one place where "auto" and unset values
get their meaning, the CTC beam included), and the attention decoder's searches: greedy and batched beam search,
teacher-forced scoring of token sequences (attention_logprobs). CTC decoding is in samba_cli.ctc."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from samba_cli.prefix_search import (
    DEFAULT_ATTENTION_BEAM,
    DEFAULT_LEXICON_PENALTY,
    DEFAULT_LM_WEIGHT,
    DEFAULT_OOV_PENALTY,
    DEFAULT_RESCORE_WEIGHT,
    DEFAULT_WORD_BONUS,
    CTCOptions,
)
from samba_cli.stepper import EagerStepper, MakeStepper, Stepper

DECODERS = ("auto", "attention", "ctc")
# what decoder="auto" becomes for a model whose metadata names no default_decoder
DEFAULT_DECODER = "attention"
# CTC beam width with a language model when beam_size is 1 (bundled stage-13 model, default decoding: beam 32 /
# 64 / 128 gave 21.91 / 21.34 / 21.21 % WER on dev-heldout, 21.93 / 21.34 % on test)
LM_BEAM_SIZE = 64


@dataclass(frozen=True)
class DecodeOptions:
    """How segments are decoded. "auto" and None values are unset until :meth:`resolve` fills them, once per run
    (``Transcriber.resolve_options``); the searches take resolved options only."""

    decoder: str = "auto"  # "attention" (Mamba decoder), "ctc" (CTC, fastest) or "auto" (the model's choice)
    beam_size: int = 1  # 1: greedy (CTC with a language model: LM_BEAM_SIZE); else beam search
    ctc: CTCOptions = field(default_factory=CTCOptions)  # CTC decoding: language model, lexicon, rescoring
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
            self.ctc.lm not in (None, "auto") or self.ctc.lexicon not in (None, "auto")
        ):
            raise ValueError("a language model or lexicon is used by CTC decoding only: use the ctc decoder")
        if self.search_workers < 1:
            raise ValueError(f"search_workers must be at least 1, got {self.search_workers}")

    @property
    def resolved(self) -> bool:
        """Whether :meth:`resolve` has left nothing to choose."""
        return self.decoder != "auto" and self.ctc.resolved

    def require_resolved(self) -> None:
        """ValueError unless the options are resolved: an "auto" or unset value has no meaning in a search."""
        if not self.resolved:
            raise ValueError(
                "decoding options with unset values: resolve them first (DecodeOptions.resolve, "
                "Transcriber.resolve_options)"
            )

    def resolve(
        self, folder: str | os.PathLike | None = None, metadata: Mapping | None = None
    ) -> DecodeOptions:
        """These options with every choice made, for the model in ``folder`` whose config.json ``metadata`` is
        given (None: no model folder, no metadata). The one place where unset values get their meaning:

        - ``decoder="auto"``: the metadata's ``default_decoder``, else DEFAULT_DECODER;
        - ``ctc.lm="auto"``: the folder's lm.arpa.gz when decoding is CTC and the folder has one, else None (none);
        - ``ctc.lexicon="auto"``: the folder's lexicon.txt.gz when the folder's own language model is used, else
          None; a lexicon without a language model is an OptionError (a ValueError);
        - ``ctc.lm_weight``, ``word_bonus``, ``oov_penalty``, ``lexicon_penalty`` None: the metadata's ``lm``
          entry when the language model is the folder's own, else prefix_search.DEFAULT_*;
        - ``ctc.rescore_weight``, ``ctc.attention_beam`` None: the metadata's values, else prefix_search.DEFAULT_*.

        Then what the search will do is written out: for CTC decoding with a language model, ``beam_size`` 1
        becomes LM_BEAM_SIZE (the CTC beam); attention rescoring (``rescore_weight``) is 0 unless CTC decoding
        runs a beam search, and ``attention_beam`` 0 without rescoring. The language model and lexicon are
        loaded (and cached) here, so that a bad file fails before any input is read. Resolving again changes
        nothing."""
        metadata = metadata or {}
        decoder = recommended_decoder(metadata) if self.decoder == "auto" else self.decoder
        options = dataclasses.replace(self, decoder=decoder)  # ValueError: an LM with the attention decoder
        given = options.ctc
        own_lm, own_lexicon = (
            (None, None) if folder is None else (Path(folder) / LM_FILE, Path(folder) / LEXICON_FILE)
        )
        lm = given.lm
        if lm == "auto":
            lm = str(own_lm) if decoder == "ctc" and own_lm is not None and own_lm.is_file() else None
        if lm is None and given.lexicon not in (None, "auto"):
            raise OptionError("a lexicon is used with a language model only", "--lexicon")
        if lm is not None:
            load_lm(lm)  # a bad language model fails here (one-line SambaError), before any input is read
        own = lm is not None and lm == str(own_lm)
        lexicon = given.lexicon
        if lexicon == "auto":
            lexicon = str(own_lexicon) if own and own_lexicon.is_file() else None
        if lexicon is not None:
            load_lexicon(lexicon)  # likewise
        tuned = (metadata.get("lm") or {}) if own else {}

        def pick(name: str, source: Mapping, default: float) -> float:
            value = getattr(given, name)
            if value is None:
                value = source.get(name)
            return default if value is None else value

        beam_size = options.beam_size
        if decoder == "ctc" and lm is not None and beam_size == 1:
            beam_size = LM_BEAM_SIZE
        searching = decoder == "ctc" and beam_size > 1  # CTC beam search: what rescoring reranks
        rescore = float(pick("rescore_weight", metadata, DEFAULT_RESCORE_WEIGHT)) if searching else 0.0
        ctc = CTCOptions(
            lm=lm,
            lm_weight=pick("lm_weight", tuned, DEFAULT_LM_WEIGHT),
            word_bonus=pick("word_bonus", tuned, DEFAULT_WORD_BONUS),
            oov_penalty=pick("oov_penalty", tuned, DEFAULT_OOV_PENALTY),
            lexicon=lexicon,
            lexicon_penalty=pick("lexicon_penalty", tuned, DEFAULT_LEXICON_PENALTY),
            rescore_weight=rescore,
            attention_beam=int(pick("attention_beam", metadata, DEFAULT_ATTENTION_BEAM)) if rescore else 0,
        )
        return dataclasses.replace(options, beam_size=beam_size, ctc=ctc)


def recommended_decoder(metadata: Mapping) -> str:
    """The decoder a model's config.json ``metadata`` recommends (``default_decoder``), else DEFAULT_DECODER;
    ValueError for a value that is no decoder."""
    decoder = metadata.get("default_decoder", DEFAULT_DECODER)
    if decoder not in ("attention", "ctc"):
        raise ValueError(f"metadata.default_decoder must be attention or ctc, got {decoder!r}")
    return decoder


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # text tokens, without bos/eos
    token_logprobs: tuple[float, ...]  # log-probability of each token under the decoder
    score: float  # the search's ranking score (length-normalised for beam search)
    # the attention decoder's log-probability of eos after the tokens, when a beam search ended them so
    end_logprob: float | None = None


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
            cut = repetition_cut(out[i], options.max_repeats)
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

    def finish(i: int, toks: list[int], lps: list[float], end: float | None = None) -> None:
        score = sum(lps) / (max(1, len(toks)) ** options.length_penalty)
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
                cut = repetition_cut(ext_t, options.max_repeats)
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
