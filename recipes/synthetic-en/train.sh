#!/usr/bin/env bash
# samba-tiny-en on the synthetic English corpus, end to end on a CPU:
# corpus -> tokenizer -> train -> eval -> export. Rerunning skips the corpus and tokenizer when present, and
# training resumes from runs/$NAME/state.pt (or returns at once when finished). See docs/training.md.
set -euo pipefail

DATA=${DATA:-data/synthetic-en}
NAME=${NAME:-samba-tiny-en}
RUN=runs/$NAME
THREADS=${THREADS:-1}
mkdir -p "$RUN"

# This is stage 1 of the bundled model, on the corpus's first version; stages 2-8 (--init-from, the 16k corpus with
# the female-like timbre, SpecAugment, checkpoint averaging, the extra voices, --freq-warp) are in docs/training.md, "The bundled samba-tiny-en".
# 1. corpus (first version: 12k train / 300 dev / 400 test utterances, ~13 h), skipped by its own marker files
python recipes/synthetic-en/prepare.py --out "$DATA" --num-train 12000 --num-dev 300 --num-test 400 --jobs 2 --seed 0 \
  --timbre-share 0

# 2. sentencepiece unigram tokenizer on the training transcripts (unk 0, bos 1, eos 2, pad 3)
[ -f "$RUN/tokenizer.model" ] || samba train tokenizer "$DATA/train.jsonl" --out "$RUN/tokenizer.model" --vocab-size 256

# 3. a 100-utterance dev subset keeps each validation under a minute on the CPU
[ -f "$RUN/dev100.jsonl" ] || python - "$DATA/dev.jsonl" "$RUN/dev100.jsonl" <<'EOF'
import json, sys
from pathlib import Path
source, target = Path(sys.argv[1]), Path(sys.argv[2])
with target.open("w") as out:
    for line in source.read_text().splitlines()[:100]:
        entry = json.loads(line)
        entry["audio"] = str((source.parent / entry["audio"]).resolve())
        out.write(json.dumps(entry) + "\n")
EOF

# 4. train: ~28 utterances (120 s of audio) per step, 1000 steps (~2.2 epochs), about an hour on 2 busy cores.
#    One torch thread: on a shared 2-core machine two threads run 6-8x slower (they wait on each other).
samba train run "$DATA/train.jsonl" --tokenizer "$RUN/tokenizer.model" --dev "$RUN/dev100.jsonl" --out "$RUN" \
  --preset tiny --max-batch-seconds 120 --max-batch-utterances 32 --accumulate 1 \
  --lr 1.5e-3 --warmup-steps 200 --max-steps 1000 --min-lr-ratio 0.05 \
  --speeds 0.9,1.0,1.1 --freq-masks 0 --time-masks 0 \
  --threads "$THREADS" --workers 0 --log-every 10 --save-every 50 --val-every 250

# 5. evaluate the best validated weights on the test set (CTC and attention decoding)
samba eval "$RUN/best" "$DATA/test.jsonl" --decoder ctc --report "$RUN/eval-test-ctc.json" --threads "$THREADS"
samba eval "$RUN/best" "$DATA/test.jsonl" --decoder attention --report "$RUN/eval-test-attention.json" --threads "$THREADS"

# 6. export: runs/$NAME/best is the release folder (config.json + model.safetensors + tokenizer.model),
#    loadable with `samba transcribe --model runs/$NAME/best` and uploadable to the Hugging Face Hub as it is.
echo "model: $RUN/best"
