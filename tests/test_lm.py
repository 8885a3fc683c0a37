"""The word n-gram language model (ARPA) and CTC prefix beam search with and without it."""

import dataclasses
import gzip
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from samba_cli.decoding.ctc import ctc_greedy, ctc_search_ref
from samba_cli.decoding.lm import LN10, Lexicon, NgramLM, lm_words, split_finished
from samba_cli.decoding.prefix_search import (
    UNK_PREFIX_PENALTY,
    CTCPrefixScorer,
    _Prefix,
    ctc_log_likelihood,
    ctc_nbest,
    sequence_score,
)
from samba_cli.errors import SambaError
from samba_cli.options import (
    DEFAULT_DECODER,
    DEFAULT_LM_WEIGHT,
    DEFAULT_OOV_PENALTY,
    LM_BEAM_SIZE,
    CTCOptions,
    DecodeOptions,
    ModelFacts,
    ResolvedCTC,
    ResolvedDecode,
    resolve_decode,
)
from tests.model_helpers import TINY_ARPA, write_tiny_lm

PIECES = ["<unk>", "<s>", "</s>", "\u2581the", "\u2581cat", "\u2581hat", "s", "\u2581", ","]
BLANK = len(PIECES)


@pytest.fixture
def tiny_lm(tmp_path) -> NgramLM:
    path = tmp_path / "lm.arpa"
    path.write_text(TINY_ARPA)
    return NgramLM.from_arpa(path)


def test_lm_words_drop_case_and_punctuation():
    assert lm_words("Don't stop, Charles!") == ["don't", "stop", "charles"]
    assert lm_words("well-known -- 'quoted' 42") == ["well", "known", "quoted", "42"]
    assert lm_words(" , ") == []


def test_backoff_scores_match_the_arpa_by_hand(tiny_lm):
    assert tiny_lm.order == 2 and tiny_lm.vocab == {"the", "cat", "hat"}
    logp, state = tiny_lm.score(tiny_lm.start(), "the")
    assert logp == pytest.approx(-0.3 * LN10) and state == ("the",)
    assert tiny_lm.score(state, "cat")[0] == pytest.approx(-0.2 * LN10)  # a bigram
    assert tiny_lm.score(("cat",), "hat")[0] == pytest.approx((-0.2 - 0.8) * LN10)  # back-off(cat) + P(hat)
    assert tiny_lm.score(("hat",), "dog") == (pytest.approx((-0.3 - 1.0) * LN10), ("<unk>",))  # unknown
    assert tiny_lm.score(("cat",), "</s>")[0] == pytest.approx(-0.1 * LN10)
    assert tiny_lm.is_prefix("ca") and tiny_lm.is_prefix("hat") and not tiny_lm.is_prefix("cab")


def test_gzip_reads_like_plain(tmp_path, tiny_lm):
    write_tiny_lm(tmp_path / "lm.bin")  # found by its content, whatever the name
    packed = NgramLM.from_arpa(tmp_path / "lm.bin")
    assert packed._ngrams == tiny_lm._ngrams and packed.order == tiny_lm.order


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (TINY_ARPA.replace("\\end\\\n", ""), "no \\\\end\\\\ line"),
        (TINY_ARPA.replace("-0.2\tthe cat", "x\tthe cat"), "line 15: not a number"),
        (TINY_ARPA.replace("-0.2\tthe cat", "-0.2\tthe cat cat cat"), "line 15: expected a 2-gram entry"),
        ("just words\n", "no \\\\data\\\\ section"),
    ],
)
def test_a_malformed_arpa_is_one_line_naming_the_file(tmp_path, text, cause):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(SambaError, match=rf"^{path}: not an ARPA language model: {cause}") as info:
        NgramLM.from_arpa(path)
    assert "\n" not in str(info.value)
    with pytest.raises(SambaError, match=r"missing.arpa: language model not found"):
        NgramLM.from_arpa(tmp_path / "missing.arpa")


def _exact_ctc(log_probs: torch.Tensor, blank: int) -> dict[tuple[int, ...], float]:
    """ln P(label sequence) for every sequence, by summing over all frame paths."""
    totals: dict[tuple[int, ...], float] = {}
    frames, classes = log_probs.shape
    for path in itertools.product(range(classes), repeat=frames):
        labels, prev = [], None
        for c in path:
            if c != blank and c != prev:
                labels.append(c)
            prev = c
        lp = float(sum(log_probs[t, c] for t, c in enumerate(path)))
        key = tuple(labels)
        totals[key] = float(torch.logaddexp(torch.tensor(totals.get(key, -math.inf)), torch.tensor(lp)))
    return totals


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_finds_the_most_probable_labelling(seed):
    torch.manual_seed(seed)
    log_probs = (torch.randn(5, 4) * 1.5).log_softmax(-1)  # 3 tokens + blank: 4^5 paths
    exact = _exact_ctc(log_probs, blank=3)
    best = max(exact, key=exact.get)
    score, tokens = ctc_nbest(log_probs, 5, 3, beam_size=64, scorer=CTCPrefixScorer(["a", "b", "c"]))[0]
    assert tokens == best
    assert score == pytest.approx(exact[best], abs=1e-4)
    for labels, total in exact.items():  # the forward algorithm sums the same paths
        assert ctc_log_likelihood(log_probs, labels, 3) == pytest.approx(total, abs=1e-4)


def _ctc(beam_size: int = 1, **ctc) -> ResolvedDecode:
    """Resolved options of CTC decoding with these CTC options (no model folder)."""
    return resolve_decode(DecodeOptions(decoder="ctc", beam_size=beam_size, ctc=CTCOptions(**ctc)))


def _posteriors(frames: list[dict[int, float]]) -> torch.Tensor:
    """Frames of {token: probability}; the rest of each frame's mass goes to blank."""
    probs = torch.full((len(frames), BLANK + 1), 1e-6)
    for t, frame in enumerate(frames):
        for tok, p in frame.items():
            probs[t, tok] = p
        probs[t, BLANK] = max(1e-6, 1 - sum(frame.values()))
    return (probs / probs.sum(-1, keepdim=True)).log()


def test_beam_without_lm_agrees_with_greedy_on_clear_posteriors():
    lp = _posteriors([{3: 0.95}, {}, {4: 0.9}, {4: 0.9}, {}, {4: 0.9}, {8: 0.8}])
    hyp = ctc_search_ref(lp, lp.shape[0], BLANK, _ctc(beam_size=8, lm=None), PIECES)
    assert hyp.tokens == ctc_greedy(lp, lp.shape[0], BLANK).tokens == (3, 4, 4, 8)


def test_the_language_model_decides_between_close_words(tmp_path):
    lp = _posteriors([{3: 0.95}, {}, {5: 0.52, 4: 0.46}, {}])  # "the hat" slightly ahead of "the cat"
    lm_path = tmp_path / "lm.arpa.gz"
    write_tiny_lm(lm_path)
    plain = _ctc(beam_size=8, lm=None)
    assert ctc_search_ref(lp, 4, BLANK, plain, PIECES).tokens == (3, 5)
    with_lm = _ctc(beam_size=8, lm=str(lm_path), lm_weight=1.0, word_bonus=0.0)
    assert ctc_search_ref(lp, 4, BLANK, with_lm, PIECES).tokens == (3, 4)
    # beam_size 1 with a language model still runs a beam search (of LM_BEAM_SIZE)
    assert ctc_search_ref(lp, 4, BLANK, _ctc(lm=str(lm_path)), PIECES).tokens == (3, 4)


def test_a_partial_word_outside_the_vocabulary_is_penalised(tiny_lm):
    scorer = CTCPrefixScorer(PIECES, tiny_lm, lm_weight=1.0, word_bonus=0.0)
    the = _Prefix((3,), blank=0.0, lm_state=tiny_lm.start(), partial="the")
    cat = scorer.extend(the, 4)  # "the cat": "the" is scored now, "cat" is the unfinished word
    cats = scorer.extend(cat, 6)  # "the cats": no vocabulary word starts with "cats"
    cat.blank = cats.blank = 0.0
    assert cat.lm_score == pytest.approx(-0.3 * LN10) and cat.partial == "cat"
    assert scorer.rank(cat) - scorer.rank(cats) == pytest.approx(-UNK_PREFIX_PENALTY)
    assert scorer.final(cat) == pytest.approx((-0.3 - 0.2 - 0.1) * LN10)  # <s> the cat </s>


def test_memoised_word_scores_add_up_bit_for_bit_as_scored_afresh(tiny_lm):
    # the search memoises an (LM state, text) pair's terms and adds them to each prefix's own score in order:
    # the sums must be exactly those of scoring the words again (beams are compared by these floats)
    scorer = CTCPrefixScorer(PIECES, tiny_lm, lm_weight=0.7, word_bonus=1.3, oov_penalty=4.1)

    def afresh(score, state, text):
        for w in lm_words(text):
            logp, state = tiny_lm.score(state, w)
            score += 0.7 * logp + 1.3
            if w not in tiny_lm.vocab:
                score -= 4.1
        return score, state

    for text in ("the", "cat", "the,cat", "zebra", "the,zebra,cat"):
        for state in (tiny_lm.start(), ("<s>", "the")):
            for score in (0.0, -3.7, 12.345678901, -1e-9, 0.1):  # the memo is filled by the first, used after
                prefix = _Prefix((3,), lm_score=score, lm_state=state)
                assert scorer._finish_word(prefix, text) == afresh(score, state, text)


def test_split_finished_cuts_after_the_last_word_punctuation_has_ended():
    assert split_finished("it,vene") == ("it,", "vene")
    assert split_finished("well-kno") == ("well-", "kno")
    assert split_finished("don'") == ("", "don'") and split_finished("don't") == ("", "don't")
    assert split_finished("cat") == ("", "cat") and split_finished("") == ("", "")


def test_words_glued_by_punctuation_are_scored_at_once(tiny_lm):
    scorer = CTCPrefixScorer([*PIECES, "hat"], tiny_lm, lm_weight=1.0, word_bonus=0.0)
    the = _Prefix((3,), blank=0.0, lm_state=tiny_lm.start(), partial="the")
    glued = scorer.extend(scorer.extend(the, 8), len(PIECES))  # "the" + "," + "hat" without a word start
    assert glued.partial == "hat" and glued.lm_state == ("the",)
    assert glued.lm_score == pytest.approx(-0.3 * LN10)  # "the" is scored now, not when "hat" ends


def test_the_oov_penalty_is_taken_off_each_word_outside_the_vocabulary(tiny_lm, tmp_path):
    the = _Prefix((3,), blank=0.0, lm_state=tiny_lm.start(), partial="the")
    scores = {}
    for penalty in (0.0, 3.0):
        scorer = CTCPrefixScorer(PIECES, tiny_lm, lm_weight=1.0, word_bonus=0.0, oov_penalty=penalty)
        cats = scorer.extend(scorer.extend(the, 4), 6)  # "the cats": "cats" is no vocabulary word
        cats.blank = 0.0
        scores[penalty] = (scorer.final(cats), scorer.final(scorer.extend(the, 4)))
    assert scores[0.0][0] - scores[3.0][0] == pytest.approx(3.0)  # one OOV word
    assert scores[0.0][1] == pytest.approx(scores[3.0][1])  # "the cat": none
    # in a search: "the cats" is acoustically ahead of "the cat", the penalty turns it round
    lp = _posteriors([{3: 0.95}, {}, {4: 0.95}, {6: 0.7}, {}])
    write_tiny_lm(tmp_path / "lm.arpa.gz")
    opts = _ctc(beam_size=8, lm=str(tmp_path / "lm.arpa.gz"), lm_weight=0.1, word_bonus=0)
    assert ctc_search_ref(lp, 5, BLANK, opts, PIECES).tokens == (3, 4, 6)
    strict = _ctc(beam_size=8, lm=str(tmp_path / "lm.arpa.gz"), lm_weight=0.1, word_bonus=0, oov_penalty=5.0)
    assert ctc_search_ref(lp, 5, BLANK, strict, PIECES).tokens == (3, 4)


def test_resolve_uses_the_model_folder_and_its_tuned_weights(tmp_path):
    meta = {"lm": {"lm_weight": 0.7, "word_bonus": 1.5, "oov_penalty": 2.5}}

    def resolve(metadata=meta, decoder="ctc", **ctc) -> ResolvedCTC:
        options = DecodeOptions(decoder=decoder, ctc=CTCOptions(**ctc))
        return resolve_decode(options, ModelFacts(tmp_path, metadata)).ctc

    assert resolve().lm is None  # the folder has no language model
    write_tiny_lm(tmp_path / "lm.arpa.gz")
    found = resolve()
    assert (found.lm, found.lm_weight, found.word_bonus) == (str(tmp_path / "lm.arpa.gz"), 0.7, 1.5)
    assert found.oov_penalty == 2.5
    assert resolve(oov_penalty=0.0).oov_penalty == 0.0
    assert resolve(lm_weight=0.2).lm_weight == 0.2
    assert resolve(decoder="attention").lm is None
    assert resolve(lm=None).lm is None
    other_path = tmp_path / "other.arpa.gz"
    write_tiny_lm(other_path)
    other = resolve(lm=str(other_path))
    # the model's weights are for its own LM (another one gets the defaults)
    assert (other.lm, other.lm_weight, other.oov_penalty) == (
        str(other_path),
        DEFAULT_LM_WEIGHT,
        DEFAULT_OOV_PENALTY,
    )
    # attention rescoring: the metadata's weight, else 0; an explicit weight wins
    assert found.rescore_weight == 0.0
    assert resolve({"rescore_weight": 0.8}).rescore_weight == 0.8
    assert resolve({"rescore_weight": 0.8}, rescore_weight=0.0).rescore_weight == 0
    # its attention beam likewise (it adds rescoring candidates: with a rescoring weight)
    assert found.attention_beam == 0
    assert resolve({"attention_beam": 2, "rescore_weight": 0.8}).attention_beam == 2
    assert resolve({"attention_beam": 2, "rescore_weight": 0.8}, attention_beam=0).attention_beam == 0
    with pytest.raises(SambaError, match="missing.arpa: language model not found"):
        resolve(lm=str(tmp_path / "missing.arpa"))
    with pytest.raises(ValueError, match="CTC decoding only"):
        DecodeOptions(decoder="attention", ctc=CTCOptions(lm="/x/other.arpa"))


def test_a_lexicon_reads_one_word_per_line(tmp_path):
    plain = tmp_path / "words.txt"
    plain.write_text("# licence notice: kept out\nCats\ncat's\ntwo words\n\nhandkercher\n", encoding="utf-8")
    packed = tmp_path / "lexicon.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        lexicon = Lexicon.from_file(path)
        assert len(lexicon) == 3 and "cats" in lexicon and "cat's" in lexicon and "licence" not in lexicon
        assert lexicon.is_prefix("handk") and lexicon.is_prefix("cat") and not lexicon.is_prefix("dog")
    with pytest.raises(SambaError, match="missing.txt: lexicon not found"):
        Lexicon.from_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n")
    with pytest.raises(SambaError, match="empty.txt: the lexicon holds no word"):
        Lexicon.from_file(tmp_path / "empty.txt")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(SambaError, match="bad.gz: cannot read the lexicon"):
        Lexicon.from_file(tmp_path / "bad.gz")


def test_lexicon_words_are_spellable_and_lose_their_own_penalty(tiny_lm):
    lexicon = Lexicon(["cats"])
    the = _Prefix((3,), blank=0.0, lm_state=tiny_lm.start(), partial="the")
    finals, ranks = {}, {}
    for name, extra in {"without": {}, "with": {"lexicon": lexicon, "lexicon_penalty": 1.0}}.items():
        scorer = CTCPrefixScorer(PIECES, tiny_lm, lm_weight=1.0, word_bonus=0.0, oov_penalty=5.0, **extra)
        cats = scorer.extend(scorer.extend(the, 4), 6)  # "the cats": "cats" is outside the LM's vocabulary
        cats.blank = 0.0
        finals[name], ranks[name] = scorer.final(cats), scorer.rank(cats)
    assert ranks["with"] - ranks["without"] == pytest.approx(-UNK_PREFIX_PENALTY)  # "cats" can be spelled
    assert finals["with"] - finals["without"] == pytest.approx(4.0)  # penalty 1 instead of 5


def test_resolve_finds_the_folders_lexicon_with_its_language_model(tmp_path):
    write_tiny_lm(tmp_path / "lm.arpa.gz")
    meta = {"lm": {"lexicon_penalty": 1.5}}

    def resolve(**ctc) -> ResolvedCTC:
        return resolve_decode(
            DecodeOptions(decoder="ctc", ctc=CTCOptions(**ctc)), ModelFacts(tmp_path, meta)
        ).ctc

    assert resolve().lexicon is None  # the folder has none
    (tmp_path / "lexicon.txt.gz").write_bytes(gzip.compress(b"cats\n"))
    found = resolve()
    assert (found.lexicon, found.lexicon_penalty) == (str(tmp_path / "lexicon.txt.gz"), 1.5)
    assert resolve(lexicon=None).lexicon is None
    assert resolve(lm=None).lexicon is None
    other = tmp_path / "other"
    other.mkdir()
    write_tiny_lm(other / "lm.arpa.gz")
    # another language model: not the folder's lexicon, unless named
    assert resolve(lm=str(other / "lm.arpa.gz")).lexicon is None
    named = str(tmp_path / "lexicon.txt.gz")
    assert resolve(lm=str(other / "lm.arpa.gz"), lexicon=named).lexicon == named
    with pytest.raises(ValueError, match="a lexicon is used with a language model only"):
        resolve(lm=None, lexicon=named)
    with pytest.raises(SambaError, match="nope.txt: lexicon not found"):
        resolve(lexicon=str(tmp_path / "nope.txt"))


def test_sequence_score_is_the_prefix_search_score_of_a_final_beam(tiny_lm):
    torch.manual_seed(0)
    lp = torch.randn(4, BLANK + 1).mul(0.5).log_softmax(-1)  # every token above CTC_TOKEN_MIN_LOGPROB
    for scorer in (CTCPrefixScorer(PIECES), CTCPrefixScorer(PIECES, tiny_lm, 0.5, 1.0, 2.0)):
        beams = ctc_nbest(lp, 4, BLANK, 100_000, scorer)  # a beam this wide prunes nothing: exact sums
        assert len(beams) > 1000
        for score, tokens in beams[:50] + beams[-50:]:
            assert sequence_score(lp, 4, BLANK, tokens, scorer) == pytest.approx(score, abs=1e-4)
    assert sequence_score(lp, 2, BLANK, (3, 3, 3), CTCPrefixScorer(PIECES)) == -math.inf  # 5 frames needed


def test_extra_candidates_join_the_rescored_beams(tmp_path):
    lp = _posteriors([{3: 0.95}, {}, {5: 0.52, 4: 0.46}, {}])  # "the hat" slightly ahead of "the cat"
    write_tiny_lm(tmp_path / "lm.arpa.gz")
    options = _ctc(beam_size=8, lm=None, rescore_weight=1.0)

    def likes_commas(candidates):  # an attention decoder that loves ", ,": worth any CTC cost
        return [100.0 * c.count(8) for c in candidates]

    assert 8 not in ctc_search_ref(lp, 4, BLANK, options, PIECES, likes_commas).tokens  # no beam holds one
    assert ctc_search_ref(lp, 4, BLANK, options, PIECES, likes_commas, [(8,)]).tokens == (8,)
    # a candidate CTC cannot align in the frames is dropped, whatever the rescorer thinks of it
    assert ctc_search_ref(lp, 4, BLANK, options, PIECES, likes_commas, [(8, 8, 8)]).tokens != (8, 8, 8)
    off = _ctc(beam_size=8, lm=None, rescore_weight=0.0)
    assert ctc_search_ref(lp, 4, BLANK, off, PIECES, likes_commas, [(8,)]).tokens == (3, 5)  # no rescoring


@pytest.mark.parametrize(
    "sentence", ["the cat", "the hat", "cat the hat", "the dog", "dog", "the the cat cat", "hat cat the"]
)
def test_scores_agree_with_kenlms_own_query(tmp_path, sentence):
    kenlm = pytest.importorskip("kenlm")
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY_ARPA)
    reference = kenlm.Model(str(path)).score(sentence, bos=True, eos=True) * LN10
    lm = NgramLM.from_arpa(path)
    state, total = lm.start(), 0.0
    for word in [*sentence.split(), "</s>"]:
        logp, state = lm.score(state, word)
        total += logp
    assert total == pytest.approx(reference, abs=1e-4)


def test_search_workers_do_not_import_torch():
    """Workers stay small and start fast: the prefix search needs NumPy and the language model only."""
    import samba_cli.decoding.pool as pools

    pool = pools.ProcessPoolExecutor(1, mp_context=pools.multiprocessing.get_context("spawn"))
    try:
        loaded = pool.submit(
            exec, "import samba_cli.decoding.prefix_search, samba_cli.decoding.pool"
        ).result()
        assert loaded is None
        assert pool.submit(eval, "'torch' in __import__('sys').modules").result() is False
    finally:
        pool.shutdown()


def test_parsed_language_model_and_lexicon_are_cached_on_disk(tmp_path, monkeypatch):
    from samba_cli.decoding import lm as lm_module

    monkeypatch.setenv("SAMBA_CACHE_DIR", str(tmp_path / "cache"))
    arpa, words = tmp_path / "lm.arpa", tmp_path / "words.txt"
    arpa.write_text(TINY_ARPA)
    words.write_text("cat\nhat\n")
    parsed = lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM)
    assert len(list((tmp_path / "cache" / "parsed").glob("ngramlm-*.npz"))) == 1
    calls = []

    def counting(path):
        calls.append(path)
        return NgramLM.from_arpa(path)

    again = lm_module.parsed_cache(str(arpa), counting, NgramLM)
    assert not calls and again.ngrams == parsed.ngrams and again.vocab == parsed.vocab  # read from the cache
    arpa.write_text(
        TINY_ARPA.replace("-0.6\tcat", "-0.45\tcat")
    )  # an edited file (other size) is parsed again
    edited = lm_module.parsed_cache(str(arpa), counting, NgramLM)
    assert calls and edited.ngrams[("cat",)][0] == -0.45
    for cached in (tmp_path / "cache" / "parsed").glob("*.npz"):
        cached.write_bytes(b"truncated")  # a damaged copy is parsed again, and replaced
    assert lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM).ngrams == edited.ngrams
    assert list(lm_module.parsed_cache(str(words), Lexicon.from_file, Lexicon)) == ["cat", "hat"]
    # an unwritable cache folder costs nothing but the parse
    monkeypatch.setenv("SAMBA_CACHE_DIR", str(words / "not-a-folder"))
    assert lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM).ngrams == edited.ngrams
    with pytest.raises(SambaError, match="language model not found"):
        lm_module.parsed_cache(str(tmp_path / "missing.arpa"), NgramLM.from_arpa, NgramLM)


class _Planted:
    """A pickle whose loading writes a file: what an attacker would plant in a shared cache folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


def test_a_planted_cache_file_never_runs_code_and_is_parsed_again(tmp_path, monkeypatch):
    import pickle

    from samba_cli.decoding import lm as lm_module

    cache = tmp_path / "cache"
    monkeypatch.setenv("SAMBA_CACHE_DIR", str(cache))
    arpa, marker = tmp_path / "lm.arpa", tmp_path / "code-ran"
    arpa.write_text(TINY_ARPA)
    parsed = lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM)
    assert (cache / "parsed").stat().st_mode & 0o777 == 0o700  # a private folder
    (written,) = (cache / "parsed").iterdir()
    written.write_bytes(pickle.dumps(_Planted(marker)))
    again = lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM)
    assert not marker.exists()
    assert isinstance(again, NgramLM) and again.ngrams == parsed.ngrams
    # well-formed arrays of the wrong kind (a lexicon's where a language model's belong) are parsed again too
    np.savez(written, **Lexicon(["cat"]).to_arrays())
    assert lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM).ngrams == parsed.ngrams


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a file away")
def test_a_cache_file_another_user_wrote_is_ignored(tmp_path, monkeypatch):
    from samba_cli.decoding import lm as lm_module

    monkeypatch.setenv("SAMBA_CACHE_DIR", str(tmp_path / "cache"))
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(TINY_ARPA)
    lm_module.parsed_cache(str(arpa), NgramLM.from_arpa, NgramLM)
    (written,) = (tmp_path / "cache" / "parsed").iterdir()
    foreign = NgramLM({("<unk>",): (-1.0, 0.0), ("dog",): (-0.1, 0.0)}, 1)
    np.savez(written, **foreign.to_arrays())
    os.chown(written, 65534, 65534)
    calls = []

    def counting(path):
        calls.append(path)
        return NgramLM.from_arpa(path)

    assert "dog" not in lm_module.parsed_cache(str(arpa), counting, NgramLM).vocab and calls


def test_cached_arrays_give_back_the_same_model_bit_for_bit(tmp_path):
    (tmp_path / "lm.arpa").write_text(TINY_ARPA)
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    back = NgramLM.from_arrays(lm.to_arrays())
    assert back.ngrams == lm.ngrams and list(back.ngrams) == list(lm.ngrams) and back.order == lm.order
    assert list(Lexicon.from_arrays(Lexicon(["b", "a"]).to_arrays())) == ["a", "b"]


def _backoff_reference(ngrams, order, vocab, state, word):
    """The back-off rule read straight off a dictionary of string n-grams (the model's own lookup is by numbers)."""
    word = word if word in vocab or word == "</s>" else "<unk>"
    context, backoff = state[-(order - 1) :] if order > 1 else (), 0.0
    for start in range(len(context) + 1):
        ctx = context[start:]
        if (*ctx, word) in ngrams:
            return (ngrams[(*ctx, word)][0] + backoff) * LN10
        backoff += ngrams[ctx][1] if ctx and ctx in ngrams else 0.0
    return (ngrams.get(("<unk>",), (-100.0, 0.0))[0] + backoff) * LN10


@pytest.mark.parametrize(("order", "extra_words"), [(3, 0), (4, 56_000)])  # 56,001^4 > 2^63: integer keys
def test_lookups_by_word_number_follow_the_back_off_rule(order, extra_words):
    rng = np.random.default_rng(order)
    words = ["<s>", "</s>", "<unk>", *[f"w{i}" for i in range(12)]]
    ngrams = {(w,): (float(rng.uniform(-3, -0.5)), float(rng.uniform(-1, 0))) for w in words}
    ngrams.update({(f"x{i}",): (-7.0, 0.0) for i in range(extra_words)})
    for n in range(2, order + 1):
        for _ in range(60):
            gram = tuple(rng.choice(words[3:], size=n))
            ngrams[gram] = (float(rng.uniform(-2, -0.1)), float(rng.uniform(-1, 0)) if n < order else 0.0)
    lm = NgramLM(ngrams, order)
    back = NgramLM.from_arrays(lm.to_arrays())
    vocab = {g[0] for g in ngrams if len(g) == 1} - {"<s>", "</s>", "<unk>"}
    queries = [*words, "never-seen"]
    for _ in range(400):
        state = tuple(rng.choice([*queries, "<s>"], size=order - 1))  # a context word the model lacks too
        word = str(rng.choice(queries))
        expected = _backoff_reference(ngrams, order, vocab, state, word)
        assert lm.score(state, word)[0] == pytest.approx(expected, abs=1e-12)
        assert back.score(state, word) == lm.score(state, word)
    assert lm.vocab == vocab and back.ngrams == ngrams and lm.is_prefix("w1") and not lm.is_prefix("w1x")


def test_a_repeated_ngram_line_counts_as_its_last_one(tmp_path):
    (tmp_path / "lm.arpa").write_text(TINY_ARPA.replace("-0.2\tthe cat\n", "-0.2\tthe cat\n-0.4\tthe cat\n"))
    lm = NgramLM.from_arpa(tmp_path / "lm.arpa")
    assert lm.score(("the",), "cat")[0] == pytest.approx(-0.4 * LN10) and lm.ngrams[("the", "cat")][0] == -0.4


def test_resolve_leaves_nothing_unset_and_the_searches_take_resolved_options_only(tmp_path):
    write_tiny_lm(tmp_path / "lm.arpa.gz")
    (tmp_path / "lexicon.txt.gz").write_bytes(gzip.compress(b"cats\n"))
    meta = {"default_decoder": "ctc", "rescore_weight": 1.0, "attention_beam": 4, "lm": {"lm_weight": 0.7}}
    for options in (DecodeOptions(), DecodeOptions(beam_size=3), DecodeOptions(ctc=CTCOptions(lm=None))):
        for model in (ModelFacts(tmp_path, meta), ModelFacts()):
            resolved = resolve_decode(options, model)
            assert isinstance(resolved, ResolvedDecode) and resolved.decoder != "auto"
            unset = [k for k, v in dataclasses.asdict(resolved.ctc).items() if v is None or v == "auto"]
            assert set(unset) <= {"lm", "lexicon"}, "only a language model or lexicon may be none"
    default = resolve_decode(DecodeOptions(), ModelFacts(tmp_path, meta))
    assert (default.decoder, default.beam_size) == ("ctc", LM_BEAM_SIZE)  # the model's choice, the LM's beam
    assert (default.ctc.lm_weight, default.ctc.rescore_weight, default.ctc.attention_beam) == (0.7, 1.0, 4)
    greedy = resolve_decode(DecodeOptions(ctc=CTCOptions(lm=None)), ModelFacts(tmp_path, meta))
    assert (greedy.beam_size, greedy.ctc.rescore_weight, greedy.ctc.attention_beam) == (1, 0.0, 0)
    assert resolve_decode(DecodeOptions()).decoder == DEFAULT_DECODER  # no metadata
    import typing

    from samba_cli.decoding.ctc import ctc_decode
    from samba_cli.decoding.decode import decode

    for search in (ctc_decode, ctc_search_ref, decode):  # resolved options by type: no check at run time
        assert typing.get_type_hints(search)["options"] is ResolvedDecode
