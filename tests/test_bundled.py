"""The bundled samba-tiny-en model on a committed fixture: four utterances by voices held out of its training.

The model is a demonstration (see its model card): on this fixture the stage-26 weights measured WER 0.273 / CER
0.096 with its default decoding (CTC beam search of 64 with its language model and lexicon, attention rescoring
and attention beam hypotheses) and 0.600 / 0.193 with greedy CTC; the stage-13 weights 0.473 / 0.227 and
0.582 / 0.189. Four utterances are too few to rank models or decodings. The bounds below leave room for float
differences, and still fail for a broken model, a broken pipeline or a wrong tokenizer (those give WER >= 1 and
CER near 1).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import samba_cli

jiwer = pytest.importorskip("jiwer")
SAMPLES = Path(__file__).parent.parent / "samples"
WER_BOUND = 0.92
CER_BOUND = 0.45


@pytest.fixture(scope="module")
def model():
    model = samba_cli.load_model(device="cpu", threads=1)
    assert model.resolved.source == "bundled"
    return model


@pytest.fixture(scope="module")
def transcript(model):
    # the default 5 s windows cut the 7.6 s third utterance; its two halves must come out as one segment
    segments, info = model.transcribe(SAMPLES / "heldout-voices.flac")
    return list(segments), info


def _wer_cer(segments) -> tuple[float, float]:
    from samba_cli.train.evaluate import normalize

    reference = normalize((SAMPLES / "heldout-voices.txt").read_text())
    hypothesis = normalize(" ".join(s.text for s in segments))
    return jiwer.wer(reference, hypothesis), jiwer.cer(reference, hypothesis)


def test_bundled_model_recognises_held_out_voices(transcript):
    segments, info = transcript
    assert info.options["decode"]["decoder"] == "ctc", "the bundled model recommends its CTC decoder"
    assert info.options["decode"]["lm"].endswith("samba-tiny-en/lm.arpa.gz"), "and its language model"
    assert info.options["decode"]["rescore_weight"] == 1.0, "and attention rescoring of the final beams"
    assert info.options["decode"]["attention_beam"] == 4, "and of an attention beam search's hypotheses"
    wer, cer = _wer_cer(segments)
    assert all(w.text for s in segments for w in s.words), "no empty word (the fixture once had one)"
    assert all("  " not in s.text for s in segments)
    assert wer < WER_BOUND
    assert cer < CER_BOUND


def test_the_language_model_steers_towards_its_vocabulary(model, transcript):
    from samba_cli.decoding.lm import lm_words, load_lm

    segments, info = transcript
    lm = load_lm(info.options["decode"]["lm"])
    greedy, greedy_info = model.transcribe(SAMPLES / "heldout-voices.flac", lm=None)
    assert greedy_info.options["decode"]["lm"] is None

    def known(segments) -> float:
        words = [w for s in segments for w in lm_words(s.text)]
        return sum(w in lm.vocab for w in words) / len(words)

    # measured (stage 26): 55 of 56 words are vocabulary words with the language model, 29 of 49 without; a
    # language model that is ignored gives equal shares
    assert known(segments) > known(list(greedy))


def test_bundled_model_timestamps_follow_the_speech(transcript):
    segments, info = transcript
    utterances = json.loads((SAMPLES / "heldout-voices.json").read_text())
    speech_start = 0.8  # the fixture starts with 0.8 s of silence, and has 0.8 s between utterances
    speech_end = info.duration - 0.8
    assert info.duration == pytest.approx(0.8 * 5 + sum(u["duration"] for u in utterances), abs=0.01)
    assert abs(segments[0].start - speech_start) < 0.3
    assert abs(segments[-1].end - speech_end) < 0.5
    words = [w for s in segments for w in s.words]
    assert words and all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(0 <= w.start < w.end <= info.duration for w in words)


def _utterance_spans(info) -> list[tuple[float, float]]:
    """Source-time (start, end) of the fixture's utterances: 0.8 s of silence before, between and after them."""
    spans, position = [], 0.8
    for utterance in json.loads((SAMPLES / "heldout-voices.json").read_text()):
        spans.append((position, position + utterance["duration"]))
        position += utterance["duration"] + 0.8
    return spans


def test_segments_words_and_cues_break_at_the_pauses_between_voices(transcript):
    from samba_cli.cues import build_cues

    segments, info = transcript
    utterances = _utterance_spans(info)
    gaps = [(a[1], b[0]) for a, b in zip(utterances, utterances[1:], strict=False)]
    # each segment holds one utterance (main once gave one segment 0.76-22.69 for all four)
    assert len(segments) == len(utterances)
    for segment, (start, end) in zip(segments, utterances, strict=True):
        assert start - 0.3 < segment.start and segment.end < end + 0.3
    # no word runs into the pause after it (main timed "off;" 4.72-6.08 although its utterance ends at 5.13)
    for word in (w for s in segments for w in s.words):
        assert not any(word.start < (a + b) / 2 < word.end for a, b in gaps), word
    for cue in build_cues(segments, duration=info.duration):
        assert not any(cue.start < (a + b) / 2 < cue.end for a, b in gaps), cue


def test_punctuation_after_a_long_pause_is_not_timed_into_the_word(model, tmp_path):
    """The model emits a word's punctuation at the end of the pause after it; the word must still end where
    the speech does (main timed "dog:" 2.16-6.74 across a 2.78-6.78 gap, in one segment)."""
    from tests.media_helpers import skip_without, speech_16k

    skip_without("espeak-ng", "sox")
    sentence = speech_16k("The quick brown fox jumps over the lazy dog.", tmp_path)
    answer = speech_16k("yes.", tmp_path)
    gap = np.zeros(4 * 16000, dtype=np.float32)
    segments, info = model.transcribe(np.concatenate([sentence, gap, answer]))
    segments = list(segments)
    gap_start, gap_end = sentence.size / 16000, (sentence.size + gap.size) / 16000
    words = [w for s in segments for w in s.words]
    assert words
    assert all(w.end <= gap_start + 0.25 or w.start >= gap_end - 0.25 for w in words), words
    assert all(s.end <= gap_start + 0.25 or s.start >= gap_end - 0.25 for s in segments), segments
    assert len(segments) >= 2


@pytest.mark.parametrize("vad", [True, False])
def test_speech_from_the_first_sample_keeps_its_first_word(model, tmp_path, vad):
    """main gave "ur meeting ..." for speech that starts at sample 0 (0.5 s of silence before it gave "Our"):
    the model never heard speech begin at its first frame. The first window now starts after a lead-in."""
    from tests.media_helpers import skip_without, speech_16k

    skip_without("espeak-ng", "sox")
    speech = speech_16k("Our meeting has been moved to Thursday afternoon in the small room.", tmp_path)
    start = int(np.argmax(np.abs(speech) > 0.01))
    segments, _ = model.transcribe(speech[start:], vad=vad)  # speech from sample 0
    segments = list(segments)
    assert segments[0].text.split()[0].lower() == "our", segments[0].text
    assert segments[0].start == 0.0 and segments[0].words[0].start < 0.1
