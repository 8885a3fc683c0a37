"""Build the general-English word trigram of CTC decoding, from nothing, in one command:

    nice -n 10 python recipes/general-lm/build.py --out data/general-lm \
        --synthetic data/synthetic-en --amazon-queen data/amazon-queen

Steps, each leaving a marker in --out that a rerun skips (delete a marker to redo its step and the later ones):

1. ``.done-kenlm``: KenLM's lmplz, built by recipes/synthetic-en/build-kenlm.sh into build/kenlm/bin/.
2. ``.done-debs``: the Debian packages of the texts (``apt-get download``, unpacked with ``dpkg-deb -x``, nothing
   installed) into debs/.
3. ``.done-synthetic-text``: the synthetic recipe's text step (its four books cut into the train, dev and test
   sentence pools), unless --synthetic holds it already.
4. ``.done-text``: general.txt, every text source normalised (general_text.py), without any dev or test sentence of
   the synthetic recipe or of --amazon-queen.
5. ``.done-lm``: lm.arpa.gz: a trigram of the in-domain transcripts (the synthetic training sentences, and the
   Amazon Queen ``train`` split's lines with --amazon-queen) mixed with a pruned trigram of general.txt by
   recipes/synthetic-en/lm.py, the mixing weight chosen by EM on the dev sentences (synthetic dev and, with
   --amazon-queen, its dev split). The vocabulary (vocab.txt) is every word of the transcripts, every word seen at
   least VOCAB_MIN_COUNT times in general.txt, and every word of general.txt that the bundled lexicon (SCOWL)
   lists.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from samba_cli.atomic import write_atomically
from samba_cli.decoding.lm import Lexicon, NgramLM, lm_words

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PACKAGES = ("sword-text-web", "dict-gcide", "dict-devil", "dict-jargon", "wordnet-base")
LEXICON = REPO / "src/samba_cli/assets/models/samba-tiny-en/lexicon.txt.gz"
VOCAB_MIN_COUNT = 2  # a word of the general text outside the lexicon needs this many occurrences
PRUNE = "0 2 3"  # lmplz --prune: bigrams seen at most twice, trigrams at most 3 times dropped (load time)


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def step_debs(out: Path) -> None:
    debs = out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        run(["apt-get", "download", *missing], cwd=debs)
    for package in PACKAGES:
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            sys.exit(f"{debs}: no {package} package: apt-get update, then rerun")
        run(["dpkg-deb", "-x", found[-1], debs / package])


def text_sources() -> tuple[str, ...]:
    """The source names general_text.py reads (its --without choices)."""
    spec = importlib.util.spec_from_file_location("general_lm_text", HERE / "general_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SOURCES


def step_synthetic_text(synthetic: Path) -> None:
    """The synthetic recipe's sources and text steps only (no speech synthesis, no TTS engine needed)."""
    spec = importlib.util.spec_from_file_location(
        "synthetic_en_prepare", REPO / "recipes/synthetic-en/prepare.py"
    )
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    synthetic.mkdir(parents=True, exist_ok=True)
    for name, step in (("sources", lambda: prep.step_sources(synthetic)), ("text", None)):
        if not (synthetic / f".done-{name}").exists():
            if step is None:
                prep.step_text(
                    synthetic, 0, 300, 400
                )  # prepare.py's defaults: --seed 0 --num-dev 300 --num-test 400
            else:
                step()
            (synthetic / f".done-{name}").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def texts(path: Path) -> list[str]:
    """The texts of a JSONL manifest or of a sentence file (text after a tab)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in lines if line.strip()]
    return [line.split("\t")[-1] for line in lines if line.strip()]


def vocabulary(general: Path, transcripts: list[str], lexicon: Lexicon) -> list[str]:
    counts = Counter(w for line in general.read_text(encoding="utf-8").splitlines() for w in line.split())
    words = {w for t in transcripts for w in lm_words(t)}
    words |= {w for w, n in counts.items() if n >= VOCAB_MIN_COUNT or w in lexicon}
    return sorted(words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/general-lm"))
    ap.add_argument(
        "--synthetic", type=Path, default=Path("data/synthetic-en"), help="synthetic recipe folder"
    )
    ap.add_argument(
        "--amazon-queen", type=Path, help="recipes/amazon-queen output: train lines in, dev/test lines out"
    )
    ap.add_argument("--lmplz", type=Path, default=REPO / "build/kenlm/bin/lmplz")
    ap.add_argument("--prune", default=PRUNE, help="lmplz --prune thresholds of the general model")
    ap.add_argument(
        "--without",
        action="append",
        default=[],
        choices=text_sources(),
        help="a text source to leave out (general_text.py --without)",
    )
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    def step(name: str, work) -> None:
        marker = out / f".done-{name}"
        if marker.exists():
            print(f"{name}: done ({marker})")
            return
        t0 = time.time()
        work()
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)

    aq = args.amazon_queen
    if aq is not None and not (aq / "train.jsonl").is_file():
        sys.exit(f"{aq}/train.jsonl not found: run recipes/amazon-queen/prepare.py first")
    step("kenlm", lambda: run(["bash", REPO / "recipes/synthetic-en/build-kenlm.sh"], cwd=REPO))
    step("debs", lambda: step_debs(out))
    step("synthetic-text", lambda: step_synthetic_text(args.synthetic))
    held = [args.synthetic / f"sentences.{s}.txt" for s in ("dev", "test")]
    tune = [args.synthetic / "sentences.dev.txt"]
    train = [args.synthetic / "sentences.train.txt"]
    if aq is not None:
        held += [aq / "dev.jsonl", aq / "test.jsonl"]
        tune += [aq / "dev.jsonl"]
        train += [aq / "train.jsonl"]
    general = out / "general.txt"
    step(
        "text",
        lambda: run(
            [sys.executable, HERE / "general_text.py", "--debs", out / "debs", "--download", out / "pypi"]
            + [a for path in held for a in ("--held", path)]
            + [a for name in args.without for a in ("--without", name)]
            + ["--out", general]
        ),
    )

    def build_lm() -> None:
        transcripts = [t for path in train for t in texts(path)]
        write_atomically(out / "transcripts.txt", lambda s: s.write("".join(t + "\n" for t in transcripts)))
        dev = [t for path in tune for t in texts(path)]
        write_atomically(out / "tune.txt", lambda s: s.write("".join(t + "\n" for t in dev)))
        vocab = vocabulary(general, transcripts, Lexicon.from_file(LEXICON))
        write_atomically(out / "vocab.txt", lambda s: s.write("".join(w + "\n" for w in vocab)))
        run(
            [sys.executable, REPO / "recipes/synthetic-en/lm.py", out / "transcripts.txt", out / "lm.arpa.gz"]
            + ["--lmplz", args.lmplz, "--general", general, "--general-prune", args.prune]
            + ["--limit-vocab", out / "vocab.txt", "--tune", out / "tune.txt"]
        )
        lm = NgramLM.from_arpa(out / "lm.arpa.gz")
        size = (out / "lm.arpa.gz").stat().st_size / 1e6
        print(f"{out / 'lm.arpa.gz'}: {len(lm.vocab)} words, {len(lm.ngrams)} n-grams, {size:.1f} MB")

    step("lm", build_lm)


if __name__ == "__main__":
    main()
