import torch

from samba_cli.align import forced_align, group_words, word_spans


def posteriors(path, vocab=6, blank=5, confidence=4.0):
    logits = torch.randn(len(path), vocab) * 0.3
    for t, tok in enumerate(path):
        logits[t, tok] += confidence
    return torch.log_softmax(logits, dim=-1)


def test_alignment_recovers_known_token_boundaries():
    b = 5
    path = [b, b, 1, 1, 1, b, b, 2, b, 2, 2, b, 3, 3, b, b]
    spans = forced_align(posteriors(path), [1, 2, 2, 3], b)
    assert [(s.start, s.end) for s in spans] == [(2, 5), (7, 8), (9, 11), (12, 14)]


def test_alignment_prefers_the_posteriors_over_uniform_spread():
    b = 5
    path = [b] * 10 + [1] + [b] * 10 + [2] + [b] * 3
    spans = forced_align(posteriors(path), [1, 2], b)
    assert (spans[0].start, spans[1].start) == (10, 21)


def test_too_short_for_repeats_returns_none():
    assert forced_align(posteriors([1, 1]), [1, 1], 5) is None
    assert forced_align(posteriors([1, 5, 1]), [1, 1], 5) is not None


def test_words_from_aligned_tokens_never_overlap():
    b = 5
    path = [b, 1, 1, b, 2, b, b, b, b, b, b, b, 3, b, 4, b, b, b, b, b]
    tokens, starts = [1, 2, 3, 4], [True, False, True, True]
    words = word_spans(tokens, [-0.1, -0.2, -0.3, -0.4], starts, posteriors(path), b, tail_frames=3)
    assert [w.tokens for w in words] == [(1, 2), (3,), (4,)]
    assert words[0].start == 1 and words[0].end == 8  # last emission at 4, extended by 3 blank frames
    assert words[1].start == 12 and words[1].end == 14  # cut at the next word's start
    assert words[2].start == 14 and words[2].end == 18
    assert abs(words[0].logprob - (-0.15)) < 1e-9


def test_unalignable_words_are_spread_in_order():
    words = word_spans([1, 2, 3], [-1.0, -1.0, -1.0], [True, True, True], posteriors([1]), 5)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(w.end > w.start for w in words)


def test_group_words():
    assert group_words([9, 8, 7], [False, False, True]) == [([9, 8], [0, 1]), ([7], [2])]


def test_punctuation_emitted_after_a_pause_joins_the_word_but_not_its_time():
    """CTC models emit a word's punctuation at the end of the pause after it, just before the next word."""
    b = 5
    # "dog" at 2-3, a long pause, ":" at 16, "yes" at 18
    path = [b, b, 1, 1] + [b] * 12 + [2, b, 3, 3, b, b]
    tokens, starts, spoken = [1, 2, 3], [True, False, True], [True, False, True]
    words = word_spans(tokens, [-0.1, -0.2, -0.3], starts, posteriors(path), b, tail_frames=3, spoken=spoken)
    assert [w.tokens for w in words] == [(1, 2), (3,)]
    assert (words[0].start, words[0].end) == (2, 7)  # speech ends at 4, plus 3 blank frames; not 17
    assert words[1].start == 18
    # a word of punctuation alone (its own word-start piece) joins the word before it
    words = word_spans(tokens, [-0.1, -0.2, -0.3], [True, True, True], posteriors(path), b, 3, spoken)
    assert [w.tokens for w in words] == [(1, 2), (3,)] and words[0].end == 7
    # and a leading one the word after it, whose time starts with its speech
    words = word_spans(
        [2, 1], [-0.1, -0.1], [True, True], posteriors([b, 2, b, b, b, 1, b]), b, 1, [False, True]
    )
    assert [(w.tokens, w.start) for w in words] == [((2, 1), 5)]


def test_a_word_glued_across_a_pause_is_split_at_the_pause():
    """A model may write the last word before a pause and the first after it as one word ("of ac" + "uis")."""
    b = 5
    path = (
        [b, 1, 1, b] + [b] * 20 + [2, 2, b, 3, b]
    )  # token 1, a 20-frame pause, tokens 2 and 3 of the same word
    tokens, starts = [1, 2, 3], [True, False, False]
    words = word_spans(tokens, [-0.1, -0.2, -0.3], starts, posteriors(path), b, tail_frames=1)
    assert [w.tokens for w in words] == [(1, 2, 3)]  # without a time map nothing is split
    at_40ms = lambda frame: frame * 0.04  # noqa: E731
    words = word_spans(
        tokens, [-0.1, -0.2, -0.3], starts, posteriors(path), b, 1, seconds=at_40ms, split_seconds=0.8
    )
    assert [w.tokens for w in words] == [(1,), (2, 3)]
    assert words[0].end <= 4 and words[1].start == 24
    words = word_spans(
        tokens, [-0.1, -0.2, -0.3], starts, posteriors(path), b, 1, seconds=at_40ms, split_seconds=0.9
    )
    assert [w.tokens for w in words] == [(1, 2, 3)]  # a pause shorter than the threshold keeps the word
