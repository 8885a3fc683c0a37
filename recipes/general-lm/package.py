"""Make a language model the bundled model's default: copy it in as lm.arpa.gz and store its tuned weights and its
description in config.json's metadata "lm" entry (the other metadata, the weights and the lexicon stay).

    python recipes/general-lm/package.py data/general-lm/lm.arpa.gz recipes/general-lm/lm-metadata.json \
        --model src/samba_cli/assets/models/samba-tiny-en

The metadata file (committed next to this script) holds the "lm" entry's new values: lm_weight, word_bonus, text,
estimator, selection, ...; keys it leaves out (oov_penalty, lexicon_penalty, lexicon) keep their values. The
language model is checked first: the decoder must be able to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from samba_cli.atomic import write_atomically
from samba_cli.decoding.lm import LM_FILE, NgramLM
from samba_cli.model.checkpoint import CONFIG_FILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lm", type=Path, help="ARPA language model (.arpa.gz)")
    ap.add_argument("metadata", type=Path, help="JSON object: the new values of metadata.lm")
    ap.add_argument("--model", type=Path, default=Path("src/samba_cli/assets/models/samba-tiny-en"))
    args = ap.parse_args()
    lm = NgramLM.from_arpa(args.lm)  # readable by the decoder
    update = json.loads(args.metadata.read_text(encoding="utf-8"))
    config_path = args.model / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    entry = config.setdefault("metadata", {}).setdefault("lm", {})
    entry.update(update, file=LM_FILE, order=lm.order, vocabulary=len(lm.vocab), ngrams=len(lm.ngrams))
    target = args.model / LM_FILE
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(args.lm, partial)
    os.replace(partial, target)
    write_atomically(config_path, lambda stream: stream.write(json.dumps(config, indent=2) + "\n"))
    size = target.stat().st_size / 1e6
    print(f"{target}: {len(lm.vocab)} words, {len(lm.ngrams)} n-grams, {size:.1f} MB; {config_path} updated")


if __name__ == "__main__":
    main()
