import dataclasses
import math
import os
import signal
import time
from functools import partial

import pytest
import torch

from samba_cli.decoding.attention import (
    attention_logprobs,
    beam_search,
    beam_search_nbest,
    greedy_search,
    repetition_cut,
)
from samba_cli.decoding.ctc import ctc_decode, ctc_greedy, ctc_search_ref
from samba_cli.decoding.pool import search_pool
from samba_cli.options import CTCOptions, DecodeOptions, ResolvedDecode, resolve_decode
from tests.model_helpers import TINY, tiny_model


def _encoded(model, batch=3, frames=60):
    feats = torch.randn(batch, TINY.n_mels, frames)
    lengths = torch.tensor([frames - 7 * i for i in range(batch)])
    return model.encode(feats, lengths)


def _sharpen(model):
    # Random models spread probability thinly; scale the embedding so the argmax is decisive and stable.
    with torch.no_grad():
        model.decoder.embed.weight.mul_(4.0)
    return model


def test_greedy_equals_beam_size_one():
    model = _sharpen(tiny_model())
    states, lengths = _encoded(model)
    greedy = greedy_search(model, states, lengths, [12, 9, 15], max_repeats=100)
    beam = beam_search(model, states, lengths, [12, 9, 15], beam_size=1, length_penalty=1.0, max_repeats=100)
    assert [h.tokens for h in greedy] == [h.tokens for h in beam]
    for g, b in zip(greedy, beam, strict=True):
        assert g.token_logprobs == b.token_logprobs


def test_batched_decoding_equals_one_at_a_time():
    model = _sharpen(tiny_model())
    states, lengths = _encoded(model)
    for search in (
        partial(greedy_search, max_repeats=100),
        partial(beam_search, beam_size=3, length_penalty=1.0, max_repeats=100),
    ):
        batched = search(model, states, lengths, [10, 10, 10])
        for i in range(3):
            n = int(lengths[i])
            alone = search(model, states[i : i + 1, :n], lengths[i : i + 1], [10])
            assert alone[0].tokens == batched[i].tokens


class _CountingStepper:
    """An eager stepper that records the rows of every step."""

    def __init__(self, model, rows, states, lengths, group=1):
        from samba_cli.decoding.stepper import EagerStepper

        self.inner, self.rows = EagerStepper(model, states, lengths, group), rows

    def step(self, tokens):
        self.rows.append(tokens.shape[0])
        return self.inner.step(tokens)

    def reorder(self, index, memory=True):
        self.inner.reorder(index, memory)

    def keep(self, segments):
        self.inner.keep(segments)


def test_finished_segments_leave_the_batch():
    """Segments that end early stop costing decoder rows, and the others decode as if alone (eager and static
    buffers)."""
    from samba_cli.decoding.stepper import StaticStepper

    model = _sharpen(tiny_model())
    states, lengths = _encoded(model)
    caps = [3, 12, 6]
    static = StaticStepper(model, rows=16, frames=64, use_graph=False)
    for beam_size in (1, 3):
        search = (
            partial(greedy_search, max_repeats=100)
            if beam_size == 1
            else partial(beam_search, beam_size=beam_size, length_penalty=1.0, max_repeats=100)
        )
        rows: list[int] = []
        batched = search(model, states, lengths, caps, make_stepper=partial(_CountingStepper, model, rows))
        fixed = search(model, states, lengths, caps, make_stepper=partial(static.load))
        assert [h.tokens for h in fixed] == [h.tokens for h in batched]
        for i in range(3):
            n = int(lengths[i])
            alone = search(model, states[i : i + 1, :n], lengths[i : i + 1], caps[i : i + 1])
            assert alone[0].tokens == batched[i].tokens
            assert (
                max(
                    abs(a - b)
                    for a, b in zip(alone[0].token_logprobs, batched[i].token_logprobs, strict=True)
                )
                < 1e-4
            )
        beam = beam_size
        assert rows[0] == 3 * beam and rows[-1] == beam  # only the longest segment's hypotheses at the end
        assert rows == sorted(rows, reverse=True) and sum(rows) < len(rows) * 3 * beam


def test_beam_never_scores_below_greedy_sequence():
    model = _sharpen(tiny_model())
    states, lengths = _encoded(model, batch=2)
    greedy = greedy_search(model, states, lengths, [8, 8], max_repeats=100)
    beam = beam_search(model, states, lengths, [8, 8], beam_size=4, length_penalty=0.0, max_repeats=100)
    for g, b in zip(greedy, beam, strict=True):
        assert b.score >= sum(g.token_logprobs) - 1e-4


def test_max_tokens_caps_length():
    model = tiny_model()
    states, lengths = _encoded(model, batch=2)
    hyps = greedy_search(model, states, lengths, [3, 5], max_repeats=100)
    assert len(hyps[0].tokens) <= 3 and len(hyps[1].tokens) <= 5


def test_repetition_cut():
    assert repetition_cut([5, 1, 2, 1, 2, 1, 2, 1, 2], max_repeats=4) == 3
    assert repetition_cut([7, 7, 7, 7], max_repeats=4) == 1
    assert repetition_cut([1, 2, 3, 1, 2, 3], max_repeats=4) is None


def test_ctc_greedy_collapses_repeats_and_blanks():
    blank = 5
    path = [blank, 1, 1, blank, 1, 2, 2, blank, blank, 3]
    log_probs = torch.full((len(path), 6), -10.0)
    for t, tok in enumerate(path):
        log_probs[t, tok] = 0.0
    assert ctc_greedy(log_probs, len(path), blank).tokens == (1, 1, 2, 3)
    assert ctc_greedy(log_probs, 3, blank).tokens == (1,)


def test_static_buffers_match_eager_decoding():
    """The CUDA-graph stepper's static-buffer logic, run without a graph on the CPU."""
    from functools import partial

    from samba_cli.decoding.stepper import StaticStepper

    model = _sharpen(tiny_model())
    states, lengths = _encoded(model)
    static = StaticStepper(model, rows=8, frames=64, use_graph=False)
    for search in (
        partial(greedy_search, max_repeats=100),
        partial(beam_search, beam_size=2, length_penalty=1.0, max_repeats=100),
    ):
        eager = search(model, states, lengths, [10, 10, 10])
        fixed = search(model, states, lengths, [10, 10, 10], make_stepper=partial(static.load))
        assert [h.tokens for h in eager] == [h.tokens for h in fixed]
        for a, b in zip(eager, fixed, strict=True):
            assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True)) < 1e-4


@torch.no_grad()
def test_a_shared_memory_decodes_like_a_copied_one():
    model = tiny_model()
    states, lengths = _encoded(model, batch=1)
    tokens = torch.randint(4, TINY.vocab_size, (3, 7))
    shared = model.decode(tokens, states, lengths)
    copied = model.decode(tokens, states.expand(3, -1, -1).contiguous(), lengths.expand(3))
    torch.testing.assert_close(shared, copied)


@torch.no_grad()
def test_attention_logprobs_score_each_sequence_as_if_alone():
    model = _sharpen(tiny_model())
    states, _ = _encoded(model, batch=1)
    candidates = [(5, 9, 7), (), (11, 5, 9, 7, 30, 6)]
    together = attention_logprobs(model, states[0], candidates)
    for tokens, score in zip(candidates, together, strict=True):
        # by hand: bos + tokens teacher-forced, each next token (then eos) scored; bos and pad never produced
        inputs = torch.tensor([[TINY.bos_id, *tokens]])
        logits = model.decode(inputs, states, torch.tensor([states.shape[1]]))[0].float()
        logits[:, [TINY.bos_id, TINY.pad_id]] = float("-inf")
        targets = torch.tensor([*tokens, TINY.eos_id])
        expected = logits.log_softmax(-1).gather(-1, targets[:, None]).sum()
        assert score == pytest.approx(float(expected), abs=1e-4)
        assert attention_logprobs(model, states[0], [tokens]) == pytest.approx([score], abs=1e-4)


def _ctc(beam_size: int = 1, **ctc) -> ResolvedDecode:
    """Resolved options of CTC decoding with these CTC options (no model folder)."""
    return resolve_decode(DecodeOptions(decoder="ctc", beam_size=beam_size, ctc=CTCOptions(**ctc)))


def test_attention_rescoring_reranks_the_final_ctc_beams():
    blank = TINY.vocab_size
    probs = torch.full((4, blank + 1), 1e-6)
    probs[:, blank] = 1.0
    probs[1, 5], probs[1, 6], probs[1, blank] = 0.5, 0.4, 0.1  # token 5 slightly ahead of token 6
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    pieces = [f"\u2581w{i}" for i in range(TINY.vocab_size)]

    def prefers_six(candidates):
        return [10.0 if 6 in c else 0.0 for c in candidates]

    beam = _ctc(beam_size=4, lm=None)
    assert ctc_search_ref(log_probs, 4, blank, beam, pieces, prefers_six).tokens == (5,)  # weight unset: off
    on = _ctc(beam_size=4, lm=None, rescore_weight=1.0)
    assert ctc_search_ref(log_probs, 4, blank, on, pieces).tokens == (5,)  # no rescorer
    assert ctc_search_ref(log_probs, 4, blank, on, pieces, prefers_six).tokens == (6,)
    assert ctc_search_ref(log_probs, 4, blank, _ctc(rescore_weight=1.0), pieces, prefers_six) == (
        ctc_greedy(log_probs, 4, blank)
    ), "greedy CTC has no beams to rerank"
    with pytest.raises(ValueError, match="rescore_weight must be >= 0"):
        CTCOptions(rescore_weight=-1.0)


def test_ctc_decode_reranks_the_attention_beam_hypotheses_too():
    model = _sharpen(tiny_model())
    states, lengths = _encoded(model)
    # flat CTC posteriors: any hypothesis of up to half the frames aligns, and the CTC beams are arbitrary
    log_probs = torch.full((3, states.shape[1], TINY.vocab_size + 1), -math.log(TINY.vocab_size + 1))
    pieces = [f"\u2581w{i}" for i in range(TINY.vocab_size)]
    segments = [(log_probs[i], int(n), states[i, : int(n)]) for i, n in enumerate(lengths)]
    # a huge rescoring weight: the candidate the attention decoder likes best wins
    rescore = dataclasses.replace(
        _ctc(beam_size=4, lm=None, rescore_weight=1e4), max_repeats=100, max_tokens_per_second=6.0
    )
    joint = dataclasses.replace(rescore, ctc=dataclasses.replace(rescore.ctc, attention_beam=3))
    without = ctc_decode(model, segments, rescore, pieces)
    with_beam = ctc_decode(model, segments, joint, pieces)
    max_tokens = [math.ceil(int(n) * TINY.frame_seconds * joint.max_tokens_per_second) for n in lengths]
    found = beam_search_nbest(
        model, states, lengths, max_tokens, beam_size=3, length_penalty=1.0, max_repeats=joint.max_repeats
    )
    gained = False
    for (*_, seg), a, b, hyps in zip(segments, without, with_beam, found, strict=True):
        score_a, score_b, *beam_scores = attention_logprobs(
            model, seg, [a.tokens, b.tokens, *(h.tokens for h in hyps)]
        )
        assert score_b >= max(beam_scores) - 1e-4  # every attention hypothesis was a candidate
        assert score_b >= score_a - 1e-4  # ... beside the CTC beams
        gained |= score_b > score_a + 1e-3
    assert gained, "the CTC beams alone miss what the attention beam search finds"
    unresolved = DecodeOptions(decoder="ctc", beam_size=4, ctc=CTCOptions(lm=None, attention_beam=3))
    assert resolve_decode(unresolved).ctc.attention_beam == 0  # needs rescoring
    with pytest.raises(ValueError, match="attention_beam must be >= 0"):
        CTCOptions(attention_beam=-1)


def test_rescoring_reuses_the_attention_beam_search_scores(monkeypatch):
    """Hypotheses the attention beam search ended with eos carry their attention score (equal to teacher
    forcing), and the rescoring does not teacher-force them again; the words are the same."""
    import samba_cli.decoding.ctc as ctc_module

    torch.manual_seed(1)
    model = _sharpen(tiny_model())
    with torch.no_grad():  # some hypotheses end with eos, some at their length cap
        model.decoder.embed.weight[TINY.eos_id] *= 4.0
    states, lengths, pieces, segments = _ctc_batch(model)
    options = dataclasses.replace(
        _ctc(beam_size=4, lm=None, rescore_weight=1.0, attention_beam=3), max_repeats=100
    )
    max_tokens = [
        max(1, math.ceil(n * TINY.frame_seconds * options.max_tokens_per_second)) for _, n, _ in segments
    ]
    found = beam_search_nbest(
        model, states, lengths, max_tokens, beam_size=3, length_penalty=1.0, max_repeats=options.max_repeats
    )
    ended = {(i, h.tokens) for i, hyps in enumerate(found) for h in hyps if h.end_logprob is not None}
    assert ended and len(ended) < sum(map(len, found))
    for i, hyps in enumerate(found):
        for h in hyps:
            if h.end_logprob is not None:
                (forced,) = attention_logprobs(model, segments[i][2], [h.tokens])
                assert abs(sum(h.token_logprobs) + h.end_logprob - forced) < 1e-3
    teacher_forced = []

    def recording(model, memory, candidates):
        teacher_forced.extend(
            (next(i for i, s in enumerate(segments) if s[2] is memory), c) for c in candidates
        )
        return attention_logprobs(model, memory, candidates)

    monkeypatch.setattr(ctc_module, "attention_logprobs", recording)
    decoded = ctc_decode(model, segments, options, pieces)
    assert teacher_forced and not ended & set(teacher_forced)
    monkeypatch.undo()
    for segment, hyp, hyps in zip(segments, decoded, found, strict=True):
        alone = ctc_search_ref(
            *segment[:2],
            TINY.vocab_size,
            options,
            pieces,
            partial(attention_logprobs, model, segment[2]),
            [h.tokens for h in hyps],
        )
        assert alone.tokens == hyp.tokens


def test_ctc_beams_are_rescored_beside_the_attention_beam_search(monkeypatch):
    """With two torch threads or more, the rescoring thread teacher-forces each segment's CTC beams as soon as
    its search ends, while this thread runs the attention beam search; the words are the same as without."""
    import threading

    import samba_cli.decoding.ctc as ctc_module

    torch.manual_seed(1)
    model = _sharpen(tiny_model())
    states, lengths, pieces, segments = _ctc_batch(model)
    options = dataclasses.replace(
        _ctc(beam_size=4, lm=None, rescore_weight=1.0, attention_beam=2), max_repeats=100
    )
    forced_in = []

    def recording(model, memory, candidates):
        forced_in.append(threading.current_thread().name)
        return attention_logprobs(model, memory, candidates)

    monkeypatch.setattr(ctc_module, "attention_logprobs", recording)
    monkeypatch.setattr(ctc_module, "rescore_beside", lambda device: False)
    alone = ctc_decode(model, segments, options, pieces)
    assert forced_in and not any(name.startswith("samba-rescore") for name in forced_in)
    forced_in.clear()
    monkeypatch.setattr(ctc_module, "rescore_beside", lambda device: True)
    beside = ctc_decode(model, segments, options, pieces)
    assert sum(name.startswith("samba-rescore") for name in forced_in) == len(segments)
    assert [h.tokens for h in beside] == [h.tokens for h in alone]


def _ctc_batch(model):
    """The encoded test batch, its pieces and its segments as ctc_decode takes them (the model's CTC posteriors)."""
    states, lengths = _encoded(model)
    with torch.no_grad():
        log_probs = model.ctc_logits(states).float().log_softmax(-1)
    pieces = [f"\u2581w{i}" for i in range(TINY.vocab_size)]
    return (
        states,
        lengths,
        pieces,
        [(log_probs[i], int(n), states[i, : int(n)]) for i, n in enumerate(lengths)],
    )


def test_search_workers_give_the_same_hypotheses(tmp_path, monkeypatch, caplog):
    import samba_cli.decoding.ctc as search
    import samba_cli.decoding.pool as pools
    from tests.model_helpers import write_tiny_lm

    monkeypatch.setattr(pools, "_POOLS", {})  # pools of its own: this test breaks one
    monkeypatch.setattr(pools, "_NO_POOL", False)

    write_tiny_lm(tmp_path / "lm.arpa.gz")
    model = _sharpen(tiny_model())
    states, lengths, pieces, segments = _ctc_batch(model)
    serial = dataclasses.replace(
        _ctc(lm=str(tmp_path / "lm.arpa.gz"), rescore_weight=1.0, attention_beam=2), max_repeats=100
    )
    parallel = dataclasses.replace(serial, search_workers=2)
    alone = ctc_decode(model, segments, serial, pieces)
    # the rescoring in this process runs while the 2 workers search: on 2 cores it gets 1 torch thread
    seen_threads = []
    choose = search._choose
    monkeypatch.setattr(search, "usable_cores", lambda: 2)
    monkeypatch.setattr(
        search, "_choose", lambda *a: seen_threads.append(torch.get_num_threads()) or choose(*a)
    )
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pooled = ctc_decode(model, segments, parallel, pieces)
        assert seen_threads and set(seen_threads) == {1} and torch.get_num_threads() == 2  # and restored
    finally:
        torch.set_num_threads(torch_threads)
    assert [(h.tokens, h.score) for h in pooled] == [(h.tokens, h.score) for h in alone]
    assert search_pool(2) is search_pool(2), "the workers are started once and kept"
    # a worker that dies (or cannot start) costs no text: that batch and the next ones are searched here
    os.kill(search_pool(2).submit(os.getpid).result(), signal.SIGKILL)
    time.sleep(0.5)  # the pool notices the death
    with caplog.at_level("WARNING", logger="samba_cli.decoding.pool"):
        again = ctc_decode(model, segments, parallel, pieces)
    assert [(h.tokens, h.score) for h in again] == [(h.tokens, h.score) for h in alone]
    assert "no search workers" in caplog.text and search_pool(2) is None
    with pytest.raises(ValueError, match="search_workers must be at least 0"):
        DecodeOptions(search_workers=-1)


def test_without_a_process_pool_the_search_runs_here(monkeypatch, caplog):
    import samba_cli.decoding.pool as pools

    def no_semaphores(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(pools, "_POOLS", {})
    monkeypatch.setattr(pools, "_NO_POOL", False)
    monkeypatch.setattr(pools, "ProcessPoolExecutor", no_semaphores)
    model = tiny_model()
    states, lengths, pieces, segments = _ctc_batch(model)
    serial = _ctc(beam_size=4, lm=None)
    alone = ctc_decode(model, segments, serial, pieces)
    with caplog.at_level("WARNING", logger="samba_cli.decoding.pool"):
        fallback = ctc_decode(model, segments, dataclasses.replace(serial, search_workers=3), pieces)
        ctc_decode(model, segments, dataclasses.replace(serial, search_workers=3), pieces)
    assert [h.tokens for h in fallback] == [h.tokens for h in alone]
    assert caplog.text.count("no search workers") == 1


def test_ctc_searches_run_beside_the_attention_beam_search(monkeypatch):
    """Without worker processes the prefix searches run in a search thread while this thread runs the
    attention beam search; the hypotheses are those of ctc_search_ref segment by segment."""
    import threading

    import samba_cli.decoding.ctc as search

    model = _sharpen(tiny_model())
    states, lengths, pieces, segments = _ctc_batch(model)
    options = dataclasses.replace(
        _ctc(beam_size=4, lm=None, rescore_weight=1.0, attention_beam=2), max_repeats=100
    )
    searched_in, started = [], threading.Event()
    candidates, nbest = search.ctc_candidates, search.search_segments

    def searching(*args, **kwargs):
        searched_in.append(threading.current_thread())
        started.set()
        return candidates(*args, **kwargs)

    def beam_search_after_a_search_started(*args, **kwargs):
        assert started.wait(10), "no prefix search started before the attention beam search"
        return nbest(*args, **kwargs)

    monkeypatch.setattr(search, "ctc_candidates", searching)
    monkeypatch.setattr(search, "search_segments", beam_search_after_a_search_started)
    decoded = ctc_decode(model, segments, options, pieces)
    assert searched_in and threading.current_thread() not in searched_in
    monkeypatch.setattr(search, "search_segments", nbest)
    found = nbest(model, [(memory, n) for _, n, memory in segments], 2, options)
    reference = [
        ctc_search_ref(
            lp,
            n,
            model.config.blank_id,
            options,
            pieces,
            partial(attention_logprobs, model, memory),
            [h.tokens for h in hyps],
        )
        for (lp, n, memory), hyps in zip(segments, found, strict=True)
    ]
    assert [(h.tokens, h.score) for h in decoded] == [(h.tokens, h.score) for h in reference]


@pytest.mark.parametrize(("cores", "cpu", "gpu"), [(1, 1, 1), (2, 2, 1), (4, 4, 3), (16, 4, 15)])
def test_auto_search_workers_fill_a_gpu_machine(monkeypatch, cores, cpu, gpu):
    """On the CPU the pool stays at MAX_AUTO_SEARCH_WORKERS (the model needs the cores); with the model on a GPU
    every core but the feeder's searches; the library resolves an auto pool (0, the command line's default) so."""
    import samba_cli.decoding.pool as pool_module

    monkeypatch.setattr(pool_module, "usable_cores", lambda: cores)
    assert pool_module.auto_search_workers() == cpu
    assert pool_module.auto_search_workers(gpu=True) == gpu
    auto = DecodeOptions(search_workers=0)
    assert resolve_decode(auto, device="cpu").search_workers == cpu
    assert resolve_decode(auto, device="cuda").search_workers == gpu
    assert resolve_decode(DecodeOptions(search_workers=3), device="cuda").search_workers == 3  # given: kept
