#!/usr/bin/env python3
"""Package a trained run as the bundled model: float16 weights, metadata from a JSON file, tokenizer copied.

    python recipes/synthetic-en/package.py runs/samba-tiny-en-3/best recipes/synthetic-en/samba-tiny-en.json \
        --lm runs/lm/lm.arpa.gz --lexicon runs/lm/lexicon.txt.gz --chunk-size 32 \
        --out src/samba_cli/assets/models/samba-tiny-en

The metadata file (committed next to this script) says what the model was trained on, for how long, on what and
what it measured; it goes into config.json under "metadata", with "weights_stored_as": "float16". The model
card (README.md in --out) is written by hand from the same numbers. The float16 copy is checked against the
float32 weights it came from: the CTC log-posteriors of a second of noise may differ by float16 rounding only.
--lm copies a language model (recipes/synthetic-en/lm.py) in as lm.arpa.gz and --lexicon a word list
(recipes/synthetic-en/lexicon.py) as lexicon.txt.gz; without them, none is left there. --chunk-size sets the SSD
chunk length of the stored config, a speed setting that leaves the outputs unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from samba_cli.decoding.lm import LEXICON_FILE, LM_FILE, Lexicon, NgramLM
from samba_cli.model import SambaASR, load_checkpoint, save_checkpoint
from samba_cli.model.checkpoint import TOKENIZER_FILE


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run", type=Path, help="trained model folder (config.json, model.safetensors, tokenizer)"
    )
    parser.add_argument("metadata", type=Path, help="JSON object stored as config.json's metadata")
    parser.add_argument("--out", type=Path, default=Path("src/samba_cli/assets/models/samba-tiny-en"))
    parser.add_argument("--lm", type=Path, help="ARPA language model (.arpa.gz) for CTC decoding")
    parser.add_argument("--lexicon", type=Path, help="word list (.txt.gz) used with the language model")
    parser.add_argument("--chunk-size", type=int, help="SSD chunk length stored in the config")
    args = parser.parse_args()
    metadata = json.loads(args.metadata.read_text(encoding="utf-8"))
    metadata["weights_stored_as"] = "float16"
    model = load_checkpoint(args.run, device="cpu").eval()
    if args.chunk_size is not None:
        rechunked = SambaASR(model.config.replace(chunk_size=args.chunk_size)).eval()
        rechunked.load_state_dict(model.state_dict())
        model = rechunked
    save_checkpoint(
        model, args.out, tokenizer_file=args.run / TOKENIZER_FILE, dtype=torch.float16, metadata=metadata
    )
    for source, name, check in (
        (args.lm, LM_FILE, NgramLM.from_arpa),
        (args.lexicon, LEXICON_FILE, Lexicon.from_file),
    ):
        target = args.out / name
        if source is not None:
            check(source)  # readable by the decoder
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        else:
            target.unlink(missing_ok=True)
    packed = load_checkpoint(args.out, device="cpu").eval()
    features = torch.randn(1, model.config.n_mels, 101, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = torch.log_softmax(model.ctc_logits(model.encode(features)[0]), -1)
        half = torch.log_softmax(packed.ctc_logits(packed.encode(features)[0]), -1)
    error = (full - half).abs().max().item()
    size = (args.out / "model.safetensors").stat().st_size / 1e6
    print(f"{args.out}: {size:.1f} MB, float16 vs float32 CTC log-posteriors max |diff| {error:.4f}")


if __name__ == "__main__":
    main()
