"""Build the word n-gram language model of CTC decoding from the transcripts of a training manifest, optionally
interpolated with a model of general text.

    python recipes/synthetic-en/lm.py data/synthetic-en/train.jsonl runs/lm/lm.arpa.gz --order 3
    python recipes/synthetic-en/lm.py data/synthetic-en/train.jsonl runs/lm/lm.arpa.gz --order 3 \
        --general data/synthetic-en/lm-general.txt --limit-vocab runs/lm/lexicon.txt.gz \
        --tune data/synthetic-en/sentences.dev.txt

The transcripts (each distinct text once) are normalised as the decoder will query them
(samba_cli.decoding.lm.lm_words: lower case, no punctuation), KenLM's lmplz estimates a modified Kneser-Ney model, and the
ARPA file is written gzip-compressed, through a temporary file. lmplz is not on PyPI or in Debian: build it from
the kenlm source distribution with recipes/synthetic-en/build-kenlm.sh, or pass --lmplz.

With --general (one normalised sentence per line, from lm_text.py), a second model is estimated on that text
(singleton bigrams and trigrams pruned, its vocabulary limited to the transcripts' words and --limit-vocab's) and
the two are mixed into one back-off model: every n-gram of either gets the linear interpolation
(1 - w) P_transcripts + w P_general, and the back-off weights are recomputed so each context's distribution sums
to one (static interpolation, as SRILM's ngram -mix-lm). The weight w is --general-weight, or the one that
maximises the likelihood of --tune's sentences (EM); tune on dev sentences, never on test sentences.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from samba_cli.decoding.lm import BOS, EOS, LN10, UNK, Lexicon, NgramLM, lm_words

Ngrams = dict[tuple[str, ...], tuple[float, float]]


def transcripts(manifest: Path) -> list[str]:
    """Each distinct text of a JSONL manifest once; a .txt file gives one text per line (after a tab, if any)."""
    seen: dict[str, None] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            text = json.loads(line)["text"] if manifest.suffix != ".txt" else line.split("\t")[-1]
            seen.setdefault(text, None)
    return list(seen)


def estimate(lmplz: str, corpus: str, order: int, out: Path, extra: list[str] = ()) -> None:
    """lmplz on ``corpus`` (one sentence per line) -> ARPA file ``out``."""
    with out.open("w") as stream:
        # --discount_fallback: a corpus this small lacks some count-of-counts the estimate needs
        cmd = [lmplz, "-o", str(order), "--discount_fallback", "-S", "20%", "-T", str(out.parent), *extra]
        subprocess.run(cmd, input=corpus, stdout=stream, text=True, check=True, stderr=subprocess.DEVNULL)


def _log10_prob(lm: NgramLM, context: tuple[str, ...], word: str) -> float:
    """log10 P(word | context) under ``lm`` (its back-off rule); -inf for a word outside its vocabulary."""
    if (word,) not in lm.ngrams:
        return -math.inf
    return lm.score(context, word)[0] / LN10


def _mix_prob(pa: float, pb: float, weight: float) -> float:
    """log10 of (1 - weight) 10^pa + weight 10^pb."""
    return math.log10((1 - weight) * 10**pa + weight * 10**pb)


def interpolate(a: NgramLM, b: NgramLM, weight: float) -> tuple[Ngrams, int]:
    """Static linear interpolation (1 - weight) a + weight b of two back-off models, as log10 ARPA entries."""
    order = max(a.order, b.order)
    mixed: Ngrams = {}
    keys = sorted(set(a.ngrams) | set(b.ngrams), key=len)
    for key in keys:
        *context, word = key
        if word == BOS:
            mixed[key] = (-99.0, 0.0)
            continue
        pa = _log10_prob(a, tuple(context), word)
        pb = _log10_prob(b, tuple(context), word)
        mixed[key] = (_mix_prob(pa, pb, weight), 0.0)
    # back-off weights: what the explicit words of a context leave, over what its shorter context gives them
    explicit: dict[tuple[str, ...], list[str]] = {}
    for key in keys:
        if len(key) > 1:
            explicit.setdefault(key[:-1], []).append(key[-1])
    for context, words in explicit.items():
        if context not in mixed:
            continue
        left = 1.0 - sum(10 ** mixed[(*context, w)][0] for w in words)
        lower = 1.0 - sum(10 ** mixed[(*context[1:], w)][0] for w in words)
        bow = math.log10(max(left, 1e-12) / max(lower, 1e-12))
        mixed[context] = (mixed[context][0], bow)
    return mixed, order


def _sentence_probs(lm: NgramLM, words: list[str]) -> list[float]:
    state: tuple[str, ...] = (BOS,)
    out = []
    for word in [*words, EOS]:
        out.append(_log10_prob(lm, state, word if (word,) in lm.ngrams else UNK))
        state = (*state, word)
    return out


def tune_weight(a: NgramLM, b: NgramLM, sentences: list[list[str]]) -> float:
    """The interpolation weight of ``b`` that maximises the likelihood of ``sentences`` (EM)."""
    pairs = []
    for words in sentences:
        # a word neither model knows is <unk> in both; one only b knows has no probability under a
        known = [w if (w,) in a.ngrams or (w,) in b.ngrams else UNK for w in words]
        pairs += zip(_sentence_probs(a, known), _sentence_probs(b, known), strict=True)
    weight = 0.5
    for _ in range(100):
        share = [weight * 10**pb / ((1 - weight) * 10**pa + weight * 10**pb) for pa, pb in pairs]
        new = sum(share) / len(share)
        if abs(new - weight) < 1e-5:
            break
        weight = new
    ppl = 10 ** (-sum(_mix_prob(pa, pb, weight) for pa, pb in pairs) / len(pairs))
    print(f"general weight {weight:.3f}: perplexity {ppl:.1f} on {len(sentences)} tuning sentences")
    return weight


def write_arpa(ngrams: Ngrams, order: int, path: Path) -> None:
    by_order: dict[int, list[tuple[str, ...]]] = {}
    for key in ngrams:
        by_order.setdefault(len(key), []).append(key)
    with path.open("w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        for n in range(1, order + 1):
            out.write(f"ngram {n}={len(by_order.get(n, []))}\n")
        for n in range(1, order + 1):
            out.write(f"\n\\{n}-grams:\n")
            for key in sorted(by_order.get(n, [])):
                logp, bow = ngrams[key]
                tail = f"\t{bow:.6f}" if n < order and bow != 0.0 else ""
                out.write(f"{logp:.6f}\t{' '.join(key)}{tail}\n")
        out.write("\n\\end\\\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="training manifest (JSONL with a text field)")
    ap.add_argument("out", type=Path, help="output .arpa.gz")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--lmplz", default=shutil.which("lmplz") or "build/kenlm/bin/lmplz")
    ap.add_argument(
        "--general", type=Path, help="general text, one normalised sentence per line (lm_text.py)"
    )
    ap.add_argument("--general-order", type=int, default=3)
    ap.add_argument("--general-prune", default="0 1 1", help="lmplz --prune thresholds of the general model")
    ap.add_argument(
        "--limit-vocab", type=Path, help="word list (lexicon) the general model's words must be in"
    )
    ap.add_argument("--general-weight", type=float, help="interpolation weight of the general model")
    ap.add_argument(
        "--tune", type=Path, help="sentences that choose the weight (one per line, tab-prefixed ok)"
    )
    args = ap.parse_args()
    if not Path(args.lmplz).is_file():
        sys.exit(f"{args.lmplz}: lmplz not found; build it with recipes/synthetic-en/build-kenlm.sh")
    if args.general is not None and args.general_weight is None and args.tune is None:
        sys.exit("--general needs --general-weight or --tune")
    texts = transcripts(args.manifest)
    corpus = "".join(" ".join(lm_words(t)) + "\n" for t in texts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        estimate(args.lmplz, corpus, args.order, arpa)
        if args.general is not None:
            allowed = set(corpus.split())
            if args.limit_vocab is not None:
                allowed |= set(Lexicon.from_file(args.limit_vocab))
            vocab = Path(tmp) / "vocab.txt"
            vocab.write_text("\n".join(sorted(allowed)) + "\n", encoding="utf-8")
            general = Path(tmp) / "general.arpa"
            prune = ["--prune", *args.general_prune.split(), "--limit_vocab_file", str(vocab)]
            estimate(args.lmplz, args.general.read_text(encoding="utf-8"), args.general_order, general, prune)
            a, b = NgramLM.from_arpa(arpa), NgramLM.from_arpa(general)
            weight = args.general_weight
            if weight is None:
                tune = [lm_words(line.split("\t")[-1]) for line in args.tune.read_text().splitlines()]
                weight = tune_weight(a, b, [t for t in tune if t])
            mixed, order = interpolate(a, b, weight)
            write_arpa(mixed, order, arpa)
            print(f"mixed with {args.general} at weight {weight:.3f}: {len(b.ngrams)} general n-grams")
        partial = args.out.with_name(args.out.name + ".part")
        with arpa.open("rb") as src, gzip.open(partial, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        lm = NgramLM.from_arpa(partial)  # refuse to publish a file the decoder cannot read
        os.replace(partial, args.out)
    print(
        f"{args.out}: {lm.order}-gram, {len(lm.vocab)} words, {len(lm.ngrams)} n-grams, "
        f"from {len(texts)} transcripts of {args.manifest}"
    )


if __name__ == "__main__":
    main()
