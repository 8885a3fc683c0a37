#!/usr/bin/env bash
# The word trigram of CTC decoding for a model that hears the game's speech as well as the synthetic corpus:
# transcripts = synthetic-en training sentences + amazon-queen training lines (never dev or test lines), mixed with
# the general English text of recipes/synthetic-en/lm_text.py; the mixing weight tuned on the amazon-queen dev lines.
# Needs: data/synthetic-en (prepare.py's text step), data/amazon-queen (prepare.py), lmplz
# (recipes/synthetic-en/build-kenlm.sh), and `apt-get install bible-kjv dict-devil dict-jargon` for lm_text.py.
set -euo pipefail
SYN=${SYN:-data/synthetic-en}
AQ=${AQ:-data/amazon-queen}
OUT=${OUT:-runs/lm-real}
LEXICON=${LEXICON:-src/samba_cli/assets/models/samba-tiny-en/lexicon.txt.gz}
mkdir -p "$OUT"
[ -f "$SYN/lm-general.txt" ] || python recipes/synthetic-en/lm_text.py --out "$SYN"
python - "$SYN/sentences.train.txt" "$AQ/train.jsonl" "$AQ/dev.jsonl" "$OUT" <<'PY'
import json, sys
from pathlib import Path
synthetic, train, dev, out = sys.argv[1:]
lines = Path(synthetic).read_text().splitlines()
lines += ["amazon-queen\t" + json.loads(x)["text"] for x in Path(train).read_text().splitlines() if x.strip()]
Path(out, "transcripts.txt").write_text("\n".join(lines) + "\n")
tune = ["amazon-queen\t" + json.loads(x)["text"] for x in Path(dev).read_text().splitlines() if x.strip()]
Path(out, "tune.txt").write_text("\n".join(tune) + "\n")
PY
python recipes/synthetic-en/lm.py "$OUT/transcripts.txt" "$OUT/lm.arpa.gz" --order 3 \
  --general "$SYN/lm-general.txt" --limit-vocab "$LEXICON" --tune "$OUT/tune.txt" ${LMPLZ:+--lmplz "$LMPLZ"}
