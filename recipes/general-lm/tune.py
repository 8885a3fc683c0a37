"""Choose a language model's weight and word bonus on a dev manifest, cheaply: the CTC log-posteriors of every
utterance are computed once (cached in --cache), then CTC prefix beam search with the language model and lexicon
runs for each grid point, without attention rescoring, and the WER is scored as `samba eval` scores it.

    python recipes/general-lm/tune.py samba-tiny-en data/amazon-queen/dev.jsonl --cache runs/lm/aq-dev.npz \
        --lm data/general-lm/lm.arpa.gz --weights 0.4,0.5,0.6 --bonuses 1,2,3

The search is the decoder's own (samba_cli.decoding.prefix_search.ctc_nbest, beam 64, OOV and lexicon penalties as
given), over each whole clip, as `samba eval` decodes clips up to 30 s (longer ones it transcribes in windows). Rescoring
is left out because it needs the model for every grid point; confirm the chosen values with `samba eval`.
Use dev manifests only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from samba_cli.api import load_model
from samba_cli.audio import load_audio
from samba_cli.decoding.lm import load_lexicon, load_lm
from samba_cli.decoding.prefix_search import CTCPrefixScorer, ctc_nbest
from samba_cli.features import log_mel
from samba_cli.train.evaluate import ErrorCounts, count_errors, normalize

BATCH = 16  # utterances encoded together


def log_posteriors(
    model_name: str, manifest: Path, cache: Path
) -> tuple[list[np.ndarray], list[str], object]:
    """Per utterance the CTC log-posteriors (S, V + 1), float32, from ``cache`` or computed and cached; the
    references; the tokenizer."""
    loaded = load_model(model_name)
    model, tokenizer = loaded.model, loaded.tokenizer
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    refs = [r["text"] for r in records]
    if cache.is_file():
        with np.load(cache) as stored:
            return [stored[str(i)] for i in range(len(records))], refs, (model, tokenizer)
    feats = [
        log_mel(torch.from_numpy(load_audio(manifest.parent / r["audio"])), model.config.n_mels)
        for r in records
    ]
    out: list[np.ndarray | None] = [None] * len(records)
    order = sorted(range(len(records)), key=lambda i: feats[i].shape[1])
    with torch.inference_mode():
        # padded batches of similar lengths, as the pipeline encodes windows (padding is masked)
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            batch = torch.nn.utils.rnn.pad_sequence([feats[i].T for i in rows], batch_first=True).transpose(
                1, 2
            )
            lengths = torch.tensor([feats[i].shape[1] for i in rows])
            states, state_lengths = model.encode(batch, lengths)
            lp = torch.log_softmax(model.ctc_logits(states).float(), -1)
            for k, i in enumerate(rows):
                out[i] = lp[k, : int(state_lengths[k])].numpy()
    np.savez(cache, **{str(i): lp for i, lp in enumerate(out)})
    return out, refs, (model, tokenizer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--cache", type=Path, required=True, help=".npz of the CTC log-posteriors")
    ap.add_argument("--lm", required=True)
    ap.add_argument("--lexicon", help="word list (default: none)")
    ap.add_argument("--weights", default="0.5")
    ap.add_argument("--bonuses", default="2.0")
    ap.add_argument("--oov-penalty", type=float, default=8.0)
    ap.add_argument("--lexicon-penalty", type=float, default=2.0)
    ap.add_argument("--beam", type=int, default=64)
    ap.add_argument("--limit", type=int, help="first N utterances only")
    args = ap.parse_args()
    t0 = time.time()
    lps, refs, (model, tokenizer) = log_posteriors(args.model, args.manifest, args.cache)
    if args.limit:
        lps, refs = lps[: args.limit], refs[: args.limit]
    t1 = time.time()
    lm = load_lm(args.lm)
    lexicon = load_lexicon(args.lexicon) if args.lexicon else None
    print(f"posteriors {t1 - t0:.1f} s, LM and lexicon loaded in {time.time() - t1:.1f} s", flush=True)
    norm_refs = [normalize(r) for r in refs]
    blank = model.config.blank_id
    for weight, bonus in itertools.product(
        [float(w) for w in args.weights.split(",")], [float(b) for b in args.bonuses.split(",")]
    ):
        t, cpu = time.time(), time.process_time()
        scorer = CTCPrefixScorer(
            tokenizer.pieces, lm, weight, bonus, args.oov_penalty, lexicon, args.lexicon_penalty
        )
        total = ErrorCounts()
        for lp, ref in zip(lps, norm_refs, strict=True):
            beams = ctc_nbest(lp, len(lp), blank, args.beam, scorer)
            hyp = tokenizer.decode(list(beams[0][1])) if beams else ""
            total = total + count_errors(ref, normalize(hyp))
        print(
            f"lm={args.lm} weight={weight} bonus={bonus}: WER {100 * total.wer:.2f} % "
            f"({len(lps)} utts, {time.time() - t:.0f} s, {time.process_time() - cpu:.0f} s CPU)",
            flush=True,
        )


if __name__ == "__main__":
    main()
