"""Word and character error rates after English text normalisation, and evaluation of a model on a manifest."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from samba_cli.decoding.decode import Encoded, decode, decoder_frames
from samba_cli.decoding.stepper import StepperFactory
from samba_cli.errors import SambaError
from samba_cli.model import SambaASR
from samba_cli.options import DecodeOptions, ModelFacts, ResolvedDecode, resolve_decode
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.data import Batch, BatchDataset, Utterance, plan_batches

# `samba eval` transcribes utterances longer than this in windows cut at pauses, as `samba transcribe` does: a
# model trained on clips of a few seconds is not run on minutes of audio at once
LONG_FORM_SECONDS = 30.0


def _eval_extra(module: str):
    """Import a module of the ``eval`` extra (jiwer, whisper-normalizer) or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SambaError(f"scoring needs {module}: pip install 'samba-asr[eval]'") from exc


@functools.lru_cache(maxsize=1)
def _normalizer() -> Callable[[str], str]:
    return _eval_extra("whisper_normalizer.english").EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation: lower case, no punctuation, spelled-out forms unified."""
    return " ".join(_normalizer()(text).split())


@dataclass(frozen=True)
class ErrorCounts:
    word_errors: int = 0  # substitutions + deletions + insertions, in words
    words: int = 0  # reference words
    char_errors: int = 0  # edit distance in characters (spaces included)
    chars: int = 0  # reference characters

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            *(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True))
        )

    @property
    def wer(self) -> float:
        return self.word_errors / max(1, self.words)

    @property
    def cer(self) -> float:
        return self.char_errors / max(1, self.chars)


def count_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Edit distances between two already normalised texts."""
    if not reference:
        return ErrorCounts(len(hypothesis.split()), 0, len(hypothesis), 0)
    if not hypothesis:
        return ErrorCounts(len(reference.split()), len(reference.split()), len(reference), len(reference))
    jiwer = _eval_extra("jiwer")
    words = jiwer.process_words(reference, hypothesis)
    chars = jiwer.process_characters(reference, hypothesis)
    return ErrorCounts(
        words.substitutions + words.deletions + words.insertions,
        words.substitutions + words.deletions + words.hits,
        chars.substitutions + chars.deletions + chars.insertions,
        chars.substitutions + chars.deletions + chars.hits,
    )


@dataclass(frozen=True)
class UtteranceResult:
    audio: str  # audio file
    duration: float  # seconds
    reference: str  # transcript from the manifest
    hypothesis: str  # decoded text
    errors: ErrorCounts  # after normalisation of both texts
    windowed: bool = False  # transcribed in windows (longer than the long-form limit), not decoded whole


@dataclass
class EvalReport:
    model: str  # checkpoint folder or name
    manifest: str  # evaluated manifest
    options: ResolvedDecode  # decoder and search used
    utterances: list[UtteranceResult]  # in manifest order
    audio_seconds: float  # total audio duration
    wall_seconds: float  # time to load, featurise and decode everything

    @property
    def errors(self) -> ErrorCounts:
        return sum((u.errors for u in self.utterances), ErrorCounts())

    @property
    def real_time_factor(self) -> float:
        """Audio seconds transcribed per wall-clock second ("x real time")."""
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def summary(self) -> dict:
        errors = self.errors
        decoding = {"decoder": self.options.decoder, "beam_size": self.options.beam_size}
        if self.options.decoder == "ctc":
            # the resolved CTC options; a language model's weights only with one
            ctc = dataclasses.asdict(self.options.ctc)
            if ctc["lm"] is None:
                ctc.update(lm_weight=None, word_bonus=None, oov_penalty=None)
            if ctc["lexicon"] is None:
                ctc.update(lexicon_penalty=None)
            decoding.update(ctc)
        return {
            "model": self.model,
            "manifest": self.manifest,
            **decoding,
            "utterances": len(self.utterances),
            "wer": errors.wer,
            "cer": errors.cer,
            "word_errors": errors.word_errors,
            "words": errors.words,
            "char_errors": errors.char_errors,
            "chars": errors.chars,
            "audio_seconds": self.audio_seconds,
            "wall_seconds": self.wall_seconds,
            "x_real_time": self.real_time_factor,
            "windowed_utterances": sum(u.windowed for u in self.utterances),
        }

    def group_summaries(self, labels: Sequence[str]) -> dict[str, dict]:
        """WER, CER and counts of the utterances sharing each label (``labels[i]`` is utterance i's)."""
        groups: dict[str, list[UtteranceResult]] = {}
        for label, utterance in zip(labels, self.utterances, strict=True):
            groups.setdefault(label, []).append(utterance)
        summaries = {}
        for label in sorted(groups):
            errors = sum((u.errors for u in groups[label]), ErrorCounts())
            summaries[label] = {
                "utterances": len(groups[label]),
                "audio_seconds": sum(u.duration for u in groups[label]),
                "wer": errors.wer,
                "cer": errors.cer,
                **dataclasses.asdict(errors),
            }
        return summaries

    def to_dict(self) -> dict:
        return {
            **self.summary(),
            "results": [
                {
                    "audio": u.audio,
                    "duration": u.duration,
                    "reference": u.reference,
                    "hypothesis": u.hypothesis,
                    "normalized_reference": normalize(u.reference),
                    "normalized_hypothesis": normalize(u.hypothesis),
                    **dataclasses.asdict(u.errors),
                    "windowed": u.windowed,
                }
                for u in self.utterances
            ],
        }


@torch.no_grad()
def decode_batch(
    model: SambaASR,
    batch: Batch,
    options: ResolvedDecode,
    steppers: StepperFactory | None = None,
    pieces: list[str] | None = None,
) -> list[list[int]]:
    """Token ids of each utterance of ``batch`` (already on the model's device), decoded as one segment each.
    ``pieces`` (the tokenizer's, by id) are needed by CTC beam search only."""
    features = batch.features.to(next(model.parameters()).dtype)  # float32 features, a bfloat16 model
    states, lengths = model.encode(features, batch.lengths)
    return decode_states(model, states, lengths, options, steppers, pieces)


@torch.no_grad()
def decode_states(
    model: SambaASR,
    states: torch.Tensor,
    lengths: torch.Tensor,
    options: ResolvedDecode,
    steppers: StepperFactory | None = None,
    pieces: list[str] | None = None,
) -> list[list[int]]:
    """Token ids for encoder states (B, S, D) with valid lengths (B,), each row decoded as one segment."""
    log_probs = model.ctc_logits(states).float().log_softmax(-1) if model.ctc_head is not None else None
    segments = [
        Encoded(states[row, : int(n)], int(n), None if log_probs is None else log_probs[row, : int(n)])
        for row, n in enumerate(lengths.tolist())
    ]
    return [list(h.tokens) for h in decode(model, segments, options, pieces or [], steppers)]


def batches_in_order(
    utterances: list[Utterance], tokenizer: Tokenizer, n_mels: int, max_batch_seconds: float, workers: int = 0
) -> Iterator[Batch]:
    """Un-augmented batches of similar duration (shortest first) for inference, features computed in
    ``workers`` processes."""
    plan = plan_batches([u.duration for u in utterances], max_batch_seconds, max_utterances=256)
    token_ids = [[] for _ in utterances]  # references are not needed for decoding
    dataset = BatchDataset(utterances, token_ids, plan, n_mels, tokenizer.pad_id)
    yield from DataLoader(dataset, batch_size=None, num_workers=workers)


def evaluate(
    model: SambaASR,
    tokenizer: Tokenizer,
    utterances: list[Utterance],
    options: ResolvedDecode | None = None,
    max_batch_seconds: float = 300.0,
    workers: int = 0,
    model_name: str = "",
    manifest_name: str = "",
    on_batch: Callable[[int], None] | None = None,
    long_form: Callable[[Utterance], str] | None = None,
    long_form_seconds: float = LONG_FORM_SECONDS,
) -> EvalReport:
    """Transcribe ``utterances`` as the resolved ``options`` ask (:func:`samba_cli.options.resolve_decode`; None:
    the defaults resolved without a model folder, greedy attention decoding) and score them against their
    transcripts. With ``long_form``, an utterance longer than ``long_form_seconds`` is not decoded whole: its
    text is ``long_form(utterance)`` (`samba eval` passes the windowed transcription of `samba transcribe`)."""
    unlabelled = [u for u in utterances if u.text is None]
    if unlabelled:
        raise ValueError(
            f'{manifest_name or unlabelled[0].audio}: {len(unlabelled)} utterances have "text": null; '
            "evaluation needs a transcript for every utterance"
        )
    options = resolve_decode(DecodeOptions(), ModelFacts()) if options is None else options
    device = next(model.parameters()).device
    windowed = {
        i for i, u in enumerate(utterances) if long_form is not None and u.duration > long_form_seconds
    }
    whole = [i for i in range(len(utterances)) if i not in windowed]
    longest = max((utterances[i].duration for i in whole), default=0.0)
    # CUDA graphs on CUDA, as transcription
    steppers = StepperFactory(model, decoder_frames(model, longest), options.cuda_graphs)
    hypotheses: dict[int, str] = {}
    start = time.perf_counter()
    short = [utterances[i] for i in whole]
    for batch in batches_in_order(short, tokenizer, model.config.n_mels, max_batch_seconds, workers):
        ids = decode_batch(model, batch.to(device), options, steppers, tokenizer.pieces)
        for index, tokens in zip(batch.indices, ids, strict=True):
            hypotheses[whole[index]] = tokenizer.decode(tokens)
        if on_batch is not None:
            on_batch(len(batch))
    for index in sorted(windowed):
        hypotheses[index] = long_form(utterances[index])
        if on_batch is not None:
            on_batch(1)
    wall = time.perf_counter() - start
    results = [
        UtteranceResult(
            str(u.audio),
            u.duration,
            u.text,
            hypotheses[i],
            count_errors(normalize(u.text), normalize(hypotheses[i])),
            windowed=i in windowed,
        )
        for i, u in enumerate(utterances)
    ]
    return EvalReport(model_name, manifest_name, options, results, sum(u.duration for u in utterances), wall)
