"""CTC decoding with the model: greedy, and prefix beam search (samba_cli.decoding.prefix_search) whose final beams
the attention decoder reranks (attention rescoring, with an attention beam search's hypotheses as extra
candidates); the searches of a batch run in worker processes (samba_cli.decoding.pool) when asked."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

import torch

from samba_cli.align import forced_align
from samba_cli.decoding.attention import Hypothesis, attention_logprobs, search_segments
from samba_cli.decoding.pool import PARALLEL_SEARCH_MIN_SEGMENTS, give_up_pools, search_pool
from samba_cli.decoding.prefix_search import ctc_candidates, make_scorer, with_candidates
from samba_cli.decoding.stepper import MakeStepper
from samba_cli.model import SambaASR
from samba_cli.options import ResolvedDecode
from samba_cli.threads import torch_threads_here, usable_cores


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


def _ctc_hypothesis(
    log_probs: torch.Tensor, tokens: tuple[int, ...], blank_id: int, score: float
) -> Hypothesis:
    """The chosen tokens with their Viterbi alignment (kept for the word times) and each token's best CTC
    log-probability over the frames where the alignment emits it."""
    spans = forced_align(log_probs, list(tokens), blank_id)
    if spans is None:
        return Hypothesis(tokens, tuple(float(log_probs[:, tok].max()) for tok in tokens), score)
    logprobs = tuple(float(log_probs[s.start : s.end, s.token].max()) for s in spans)
    return Hypothesis(tokens, logprobs, score, alignment=tuple(spans))


# attention log-probability of each candidate token sequence of one segment (see attention_logprobs)
Rescorer = Callable[[list[tuple[int, ...]]], list[float]]


def ctc_search_ref(
    log_probs: torch.Tensor,
    length: int,
    blank_id: int,
    options: ResolvedDecode,
    pieces: list[str],
    rescorer: Rescorer | None = None,
    candidates: Sequence[tuple[int, ...]] = (),
) -> Hypothesis:
    """The reference of :func:`ctc_decode`, one segment at a time in this thread (tests compare the two): greedy,
    or prefix beam search of ``beam_size`` with or without a language model (``options.ctc``). ``pieces``: the
    tokenizer's pieces by id. With a ``rescorer`` and a ``rescore_weight`` above 0, beam search returns the one of
    its RESCORE_BEAMS best final beams, and of the extra ``candidates`` (token sequences, e.g. attention beam
    search hypotheses, scored by :func:`samba_cli.decoding.prefix_search.sequence_score`), with the best score +
    rescore_weight x its attention log-probability."""
    if _greedy(options):
        return ctc_greedy(log_probs, length, blank_id)
    rescoring = rescorer is not None and options.ctc.rescore_weight > 0
    lp = log_probs[:length].float().cpu()
    beams = ctc_candidates(
        lp, length, blank_id, options.beam_size, options.ctc, pieces, rescoring, candidates
    )
    return _choose(
        log_probs, length, blank_id, options.ctc.rescore_weight, beams, rescorer if rescoring else None
    )


def _greedy(options: ResolvedDecode) -> bool:
    """Best path decoding: no language model and a beam of 1."""
    return options.ctc.lm is None and options.beam_size == 1


def _choose(
    log_probs: torch.Tensor,
    length: int,
    blank_id: int,
    rescore_weight: float,
    beams: list[tuple[float, tuple[int, ...]]],
    rescorer: Rescorer | None,
) -> Hypothesis:
    """The best of ``beams`` (best first), reranked by the ``rescorer`` when there is one and a choice."""
    score, tokens = beams[0]
    if rescorer is not None and len(beams) > 1:
        attention = rescorer([t for _, t in beams])
        score, tokens = max(
            ((s + rescore_weight * a, t) for (s, t), a in zip(beams, attention, strict=True)),
            key=lambda st: st[0],
        )
    return _ctc_hypothesis(log_probs[:length].float().cpu(), tokens, blank_id, score)


def ctc_decode(
    model: SambaASR,
    segments: list[tuple[torch.Tensor, int, torch.Tensor]],
    options: ResolvedDecode,
    pieces: list[str],
    make_stepper: MakeStepper | None = None,
) -> list[Hypothesis]:
    """CTC decoding of a batch of segments, each (CTC log-posteriors (S, V + 1), frames to search, encoder states
    (T, D) the attention decoder reads), with attention rescoring and its attention beam search as ``options``
    ask (the beam search runs on all segments at once). The CTC prefix searches (:func:`ctc_candidates`) run
    beside this thread, which meanwhile runs the attention beam search and the rescoring: in worker processes
    (:func:`search_pool`) with ``search_workers`` above 1, else in one search thread (the searches are Python,
    the attention work mostly torch kernels that release the GIL). The result is the same as
    :func:`ctc_search_ref` of each segment."""
    ctc = options.ctc
    blank = model.config.blank_id
    if _greedy(options):
        return [ctc_greedy(lp, n, blank) for lp, n, _ in segments]
    rescoring = ctc.rescore_weight > 0
    parallel = options.search_workers > 1 and len(segments) >= PARALLEL_SEARCH_MIN_SEGMENTS
    pool = search_pool(options.search_workers) if parallel else None
    arrays = [lp[:n].float().cpu().numpy() for lp, n, _ in segments]
    jobs: list[Future] = []
    early: list[Future] = []  # the CTC beams' attention scores, teacher-forced in the rescoring thread
    try:
        for array, (_, n, _) in zip(arrays, segments, strict=True):
            args = (array, n, blank, options.beam_size, ctc, pieces, rescoring)
            jobs.append((pool or _search_thread()).submit(ctc_candidates, *args))
        if rescoring and rescore_beside(next(model.parameters()).device):
            early = [
                _rescore_thread().submit(_beam_scores, model, s[2], job)
                for s, job in zip(segments, jobs, strict=True)
            ]
        # the torch work here runs while the searches run: together never more busy threads than cores
        searching = options.search_workers if pool is not None else 1
        with torch_threads_at_most(max(1, usable_cores() - searching)):
            candidates = _attention_candidates(model, segments, options, make_stepper)
            scorer = make_scorer(ctc, pieces) if rescoring else None
            chosen = []
            for k, ((lp, n, memory), array, job, extra) in enumerate(
                zip(segments, arrays, jobs, candidates, strict=True)
            ):
                beams = job.result()
                if scorer is not None and extra:
                    beams = with_candidates(beams, array, n, blank, scorer, [h.tokens for h in extra])
                # the hypotheses the attention beam search ended with eos come with their attention scores
                known = {
                    h.tokens: sum(h.token_logprobs) + h.end_logprob
                    for h in extra
                    if h.end_logprob is not None
                }
                if early:
                    known |= early[k].result()
                rescorer = partial(_attention_scores, model, memory, known) if rescoring else None
                chosen.append(_choose(lp, n, blank, ctc.rescore_weight, beams, rescorer))
            return chosen
    except BrokenProcessPool as error:  # a worker died or could not start: search here from now on
        give_up_pools(error)
        return ctc_decode(model, segments, options, pieces, make_stepper)
    except BaseException:  # Ctrl-C or a failed search: the batch's other searches are not waited for
        for job in jobs + early:
            job.cancel()
        raise


def rescore_beside(device: torch.device) -> bool:
    """Whether the CTC beams are teacher-forced in a thread of their own, beside the attention beam search: on
    the CPU, when torch may use two threads or more here (two cores, and not ``--threads 1``). Not on a GPU,
    whose CUDA graph captures (of the attention beam search) must not see another thread's CUDA work."""
    return device.type == "cpu" and torch_threads_here() > 1


@torch.inference_mode()
def _beam_scores(model: SambaASR, memory: torch.Tensor, job: Future) -> dict[tuple[int, ...], float]:
    """The attention log-probabilities of a segment's final CTC beams (its search ``job``'s result, waited
    for), on the rescoring thread's one torch thread."""
    beams = [tokens for _, tokens in job.result()]
    return dict(zip(beams, attention_logprobs(model, memory, beams), strict=True)) if len(beams) > 1 else {}


def _attention_scores(
    model: SambaASR,
    memory: torch.Tensor,
    known: dict[tuple[int, ...], float],
    candidates: list[tuple[int, ...]],
) -> list[float]:
    """:func:`attention_logprobs` of the candidates on one segment's encoder states; those in ``known`` (scored
    already, by the attention beam search) are not teacher-forced again."""
    fresh = [c for c in candidates if c not in known]
    known = known | dict(zip(fresh, attention_logprobs(model, memory, fresh) if fresh else [], strict=True))
    return [known[c] for c in candidates]


def _attention_candidates(
    model: SambaASR,
    segments: list[tuple[torch.Tensor, int, torch.Tensor]],
    options: ResolvedDecode,
    make_stepper: MakeStepper | None,
) -> list[list[Hypothesis]]:
    """The finished hypotheses of an attention beam search of ``options.ctc.attention_beam`` on every segment
    (with rescoring only; else none)."""
    ctc = options.ctc
    if not (ctc.rescore_weight > 0 and ctc.attention_beam > 0 and segments):
        return [[] for _ in segments]
    return search_segments(model, [(s, n) for _, n, s in segments], ctc.attention_beam, options, make_stepper)


@functools.cache
def _rescore_thread() -> ThreadPoolExecutor:
    """The one thread (per process, started on first use) that rescores CTC beams beside the beam search, with
    one torch thread of its own (the main thread keeps its count)."""
    return ThreadPoolExecutor(
        1, thread_name_prefix="samba-rescore", initializer=torch.set_num_threads, initargs=(1,)
    )


@functools.cache
def _search_thread() -> ThreadPoolExecutor:
    """The one thread (per process, started on first use) that runs CTC prefix searches without worker processes."""
    return ThreadPoolExecutor(1, thread_name_prefix="samba-search")


@contextlib.contextmanager
def torch_threads_at_most(threads: int) -> Iterator[None]:
    """Within the block torch uses at most ``threads`` CPU threads; its previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
