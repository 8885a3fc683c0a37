"""Build the word n-gram language model of CTC decoding from the transcripts of a training manifest.

    python recipes/synthetic-en/lm.py data/synthetic-en/train.jsonl runs/lm/lm.arpa.gz --order 3

The transcripts (each distinct text once) are normalised as the decoder will query them
(samba_cli.lm.lm_words: lower case, no punctuation), KenLM's lmplz estimates a modified Kneser-Ney model, and the
ARPA file is written gzip-compressed, through a temporary file. lmplz is not on PyPI or in Debian: build it from
the kenlm source distribution with recipes/synthetic-en/build-kenlm.sh, or pass --lmplz.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from samba_cli.lm import NgramLM, lm_words


def transcripts(manifest: Path) -> list[str]:
    seen: dict[str, None] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            seen.setdefault(json.loads(line)["text"], None)
    return list(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="training manifest (JSONL with a text field)")
    ap.add_argument("out", type=Path, help="output .arpa.gz")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--lmplz", default=shutil.which("lmplz") or "build/kenlm/bin/lmplz")
    args = ap.parse_args()
    if not Path(args.lmplz).is_file():
        sys.exit(f"{args.lmplz}: lmplz not found; build it with recipes/synthetic-en/build-kenlm.sh")
    texts = transcripts(args.manifest)
    corpus = "".join(" ".join(lm_words(t)) + "\n" for t in texts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"
        with arpa.open("w") as out:
            # --discount_fallback: a corpus this small lacks some count-of-counts the estimate needs
            cmd = [args.lmplz, "-o", str(args.order), "--discount_fallback", "-S", "20%", "-T", tmp]
            subprocess.run(cmd, input=corpus, stdout=out, text=True, check=True, stderr=subprocess.DEVNULL)
        partial = args.out.with_name(args.out.name + ".part")
        with arpa.open("rb") as src, gzip.open(partial, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        lm = NgramLM.from_arpa(partial)  # refuse to publish a file the decoder cannot read
        os.replace(partial, args.out)
    print(
        f"{args.out}: {args.order}-gram, {len(lm.vocab)} words, from {len(texts)} transcripts of {args.manifest}"
    )


if __name__ == "__main__":
    main()
