"""Build the lexicon of CTC decoding: a word list whose words the beam search may spell beside the language model.

    python recipes/synthetic-en/lexicon.py /usr/share/dict/american-english runs/lm/lexicon.txt.gz \
        --notice /usr/share/doc/wamerican/copyright

The words (Debian's wamerican: SCOWL's American English list, size 50) are normalised as the decoder will query
them (samba_cli.decoding.lm.lm_words: lower case, letters, digits and inner apostrophes; a line that is not one word is
dropped), de-duplicated and sorted. The licence notice goes at the top of the file as "#" comment lines, so every
copy of the list carries it. The file is written gzip-compressed, through a temporary file.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from samba_cli.atomic import write_atomically
from samba_cli.decoding.lm import Lexicon


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("words", type=Path, help="word list, one word per line")
    parser.add_argument("out", type=Path, help="lexicon to write (.txt.gz)")
    parser.add_argument("--notice", type=Path, help="licence text copied to the top of the file as comments")
    args = parser.parse_args()
    kept = list(Lexicon(args.words.read_text(encoding="utf-8").splitlines()))  # the decoder's normalisation
    if not kept:
        print(f"{args.words}: no word", file=sys.stderr)
        return 1
    header = [
        f"# samba-asr lexicon: {len(kept)} words from {args.words.name}, normalised with samba_cli.decoding.lm.lm_words"
    ]
    if args.notice is not None:
        header += [
            "#",
            *(f"# {line}".rstrip() for line in args.notice.read_text(encoding="utf-8").splitlines()),
        ]
    text = ("\n".join([*header, *kept]) + "\n").encode("utf-8")

    def write(raw) -> None:
        # no file name and mtime 0 in the gzip header: the same input gives the same bytes, whatever the output path
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as stream:
            stream.write(text)

    write_atomically(args.out, write, binary=True)
    Lexicon.from_file(args.out)  # readable by the decoder
    size = args.out.stat().st_size / 1e3
    print(f"{args.out}: {len(kept)} words, {size:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
