"""CTC search with a word language model: samba's prefix search against compiled candidates, same posteriors.

Runs the model once over the first ``--count`` utterances of a manifest (greedy CTC) and keeps the CTC
log-posteriors the pipeline hands to CTC decoding; then decodes the same posteriors with each search and prints
its search time, peak RSS and WER (Whisper's English normalisation, as ``samba eval``). No attention rescoring:
this compares the searches alone. The model folder's language model, lexicon and metadata weights are used.

- ``greedy``: best path, no language model.
- ``samba``: :func:`samba_cli.decoding.prefix_search.ctc_nbest`, the word-level prefix search of the default decoding (beam 64).
- ``flashlight``: flashlight-text's ``LexiconDecoder`` (C++, KenLM inside; what torchaudio's ``ctc_decoder``
  wraps) over a trie of the LM vocabulary and the lexicon, each word spelled lower-case and capitalised, LM
  words also with each punctuation piece after them (the acoustic model writes case and punctuation; a lexicon
  decoder can only emit spellings its trie holds). KenLM scores are log10, so the LM weight is scaled by ln 10.
- ``pyctcdecode``: pyctcdecode's BPE beam search (Python) with a language-model class that scores words after
  :func:`samba_cli.decoding.lm.lm_words`, with samba's OOV and lexicon penalties, through the ``kenlm`` module.

The candidates need ``pip install flashlight-text pyctcdecode kenlm`` (pyctcdecode 0.5.0 pins numpy<2: install
it with ``--no-deps`` in an environment with numpy 2). A search whose package is missing is skipped.

    python benchmarks/ctc_decoders.py data/synthetic-en/test.jsonl --count 400
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

import samba_cli.decoding.decode
from samba_cli.api import load_model
from samba_cli.decoding.lm import lm_words, load_lexicon, load_lm
from samba_cli.decoding.prefix_search import CTCPrefixScorer, ctc_nbest
from samba_cli.train.evaluate import count_errors, normalize

Search = Callable[[torch.Tensor], list[int]]  # (S, V + 1) log-posteriors -> token ids


def posteriors(model, manifest: Path, count: int) -> list[tuple[str, list[torch.Tensor]]]:
    """(reference text, the CTC log-posteriors of its segments) for the manifest's first utterances."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:count]
    kept: list[torch.Tensor] = []
    decode = samba_cli.decoding.decode.ctc_decode

    def keep(net, segments, options, pieces, steppers=None):
        kept.extend(lp[:n].clone() for lp, n, _ in segments)
        return decode(net, segments, options, pieces, steppers)

    samba_cli.decoding.decode.ctc_decode = keep
    out = []
    try:
        for row in rows:
            kept.clear()
            list(model.transcribe(str(manifest.parent / row["audio"]), decoder="ctc", lm=None)[0])
            out.append((row["text"], list(kept)))
    finally:
        samba_cli.decoding.decode.ctc_decode = decode
    return out


def collapse(path: list[int], blank: int) -> list[int]:
    ids, prev = [], blank
    for t in path:
        if t not in (blank, prev) and t >= 0:
            ids.append(t)
        prev = t
    return ids


def make_greedy(blank: int, **_) -> Search:
    return lambda lp: collapse(lp.argmax(-1).tolist(), blank)


def make_samba(blank: int, pieces, lm, lexicon, weights, beam: int, **_) -> Search:
    scorer = CTCPrefixScorer(
        pieces,
        load_lm(lm),
        weights["lm_weight"],
        weights["word_bonus"],
        weights["oov_penalty"],
        load_lexicon(lexicon),
        weights["lexicon_penalty"],
    )
    return lambda lp: list(ctc_nbest(lp, lp.shape[0], blank, beam, scorer)[0][1])


def make_flashlight(blank: int, pieces, lm, lexicon, weights, beam: int, tokenizer, **_) -> Search:
    from flashlight.lib.text.decoder import (
        CriterionType,
        KenLM,
        LexiconDecoder,
        LexiconDecoderOptions,
        SmearingMode,
        Trie,
    )
    from flashlight.lib.text.dictionary import Dictionary

    vocab = load_lm(lm).vocab
    words = sorted(set(vocab) | set(load_lexicon(lexicon)))
    kenlm = KenLM(lm, Dictionary(["<unk>", *words]))
    trie, start = Trie(blank + 1, blank), kenlm.start(False)
    marks = [tokenizer.encode(mark)[-1:] for mark in (",", ".", "?", "!", ";", ":")]
    for index, word in enumerate(words, 1):
        _, score = kenlm.score(start, index)
        for form in {word, word.capitalize()}:
            spelling = tokenizer.encode(form)
            trie.insert(spelling, index, score)
            for mark in marks if word in vocab else ():
                trie.insert(spelling + mark, index, score)
    trie.smear(SmearingMode.MAX)
    options = LexiconDecoderOptions(
        beam_size=beam,
        beam_size_token=16,
        beam_threshold=25.0,
        lm_weight=weights["lm_weight"] * math.log(10),
        word_score=weights["word_bonus"],
        unk_score=-math.inf,
        sil_score=0.0,
        log_add=False,
        criterion_type=CriterionType.CTC,
    )
    decoder = LexiconDecoder(options, trie, kenlm, blank, blank, 0, [], False)

    def search(lp: torch.Tensor) -> list[int]:
        emissions = lp.float().contiguous()
        best = decoder.decode(emissions.data_ptr(), emissions.shape[0], emissions.shape[1])[0]
        return collapse(list(best.tokens), blank)

    return search


def make_pyctcdecode(blank: int, pieces, lm, lexicon, weights, beam: int, tokenizer, **_) -> Search:
    import kenlm
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC
    from pyctcdecode.language_model import AbstractLanguageModel

    words, extra, model = load_lm(lm), load_lexicon(lexicon), kenlm.Model(lm)

    class WordLM(AbstractLanguageModel):
        order = 3

        def get_start_state(self):
            state = kenlm.State()
            model.BeginSentenceWrite(state)
            return state

        def score_partial_token(self, partial: str) -> float:
            last = lm_words(partial)[-1:]
            return 0.0 if not last or words.is_prefix(last[0]) or extra.is_prefix(last[0]) else -10.0

        def score(self, prev, word: str, is_last_word: bool = False):
            total, state = 0.0, prev
            for w in [*lm_words(word), *(["</s>"] if is_last_word else [])]:
                after = kenlm.State()
                total += weights["lm_weight"] * model.BaseScore(state, w, after) * math.log(10)
                if w != "</s>":
                    total += weights["word_bonus"]
                    if w not in words.vocab:
                        total -= weights["lexicon_penalty"] if w in extra else weights["oov_penalty"]
                state = after
            return total, state

    labels = ["<unk>" if i == 0 else p if p[0] != "<" else f"<{i}>" for i, p in enumerate(pieces)] + [""]
    decoder = BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), WordLM())
    # its text back to token ids, so that every search is scored by the same detokenisation
    return lambda lp: tokenizer.encode(decoder.decode(lp.numpy(), beam_width=beam, token_min_logp=-8.0))


SEARCHES = {
    "greedy": make_greedy,
    "samba": make_samba,
    "flashlight": make_flashlight,
    "pyctcdecode": make_pyctcdecode,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--model", default=None, help="bundled name, model folder or Hub repo id")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--searches", default=",".join(SEARCHES))
    parser.add_argument("--beam", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu", threads=1)
    decode = model.resolve_options().decode
    ctc = decode.ctc
    if ctc.lm is None or ctc.lexicon is None:
        parser.error("the model has no language model and lexicon")
    weights = {k: getattr(ctc, k) for k in ("lm_weight", "word_bonus", "oov_penalty", "lexicon_penalty")}
    started = time.perf_counter()
    data = posteriors(model, args.manifest, args.count)
    audio = sum(json.loads(line)["duration"] for line in args.manifest.read_text().splitlines()[: args.count])
    print(
        f"{len(data)} utterances, {audio:.0f} s of audio, posteriors in {time.perf_counter() - started:.1f} s"
    )
    tokenizer = model.tokenizer
    blank = model.model.config.blank_id
    for name in args.searches.split(","):
        started = time.perf_counter()
        try:
            search = SEARCHES[name](
                blank=blank,
                pieces=tokenizer.pieces,
                lm=ctc.lm,
                lexicon=ctc.lexicon,
                weights=weights,
                beam=args.beam,
                tokenizer=tokenizer,
            )
        except ImportError as error:
            print(f"{name}: skipped ({error})")
            continue
        setup = time.perf_counter() - started
        started = time.perf_counter()
        errors = None
        for text, segments in data:
            hypothesis = " ".join(tokenizer.decode(search(lp)).strip() for lp in segments)
            counts = count_errors(normalize(text), normalize(hypothesis))
            errors = counts if errors is None else errors + counts
        searched = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name}: set-up {setup:.1f} s, search {searched:.1f} s ({audio / searched:.0f}x real time), "
            f"WER {100 * errors.wer:.2f} %, peak RSS so far {peak:.0f} MiB"
        )


if __name__ == "__main__":
    main()
