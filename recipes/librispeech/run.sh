#!/usr/bin/env bash
# LibriSpeech (or another lhotse corpus) end to end, in stages that skip finished work:
#   1 prepare (lhotse download when DOWNLOAD=1, manifests -> CutSets)  2 tokenizer  3 train (torchrun when
#   NPROC/NNODES say so)  4 average the kept snapshots  5 eval on the test parts (prints WER)  6 package for the Hub
#   (pushed with `samba models push` when HF_REPO is set).
# Run a range of stages with STAGE=N STOP_STAGE=M. Every setting below can be given in the environment; see
# docs/training.md, "Train a real checkpoint". CI runs it on a few generated utterances in the LibriSpeech layout.
set -euo pipefail

STAGE=${STAGE:-1}
STOP_STAGE=${STOP_STAGE:-6}
CORPUS=${CORPUS:-librispeech}                  # a lhotse recipe name (prepare_$CORPUS)
CORPUS_DIR=${CORPUS_DIR:-download/LibriSpeech}
DOWNLOAD=${DOWNLOAD:-0}
TRAIN_PARTS=${TRAIN_PARTS:-train-clean-100,train-clean-360,train-other-500}
DEV_PARTS=${DEV_PARTS:-dev-clean,dev-other}
TEST_PARTS=${TEST_PARTS:-test-clean,test-other}
DATA=${DATA:-data/$CORPUS}
NAME=${NAME:-samba-base-$CORPUS}
RUN=${RUN:-runs/$NAME}
VOCAB=${VOCAB:-1024}
PRESET=${PRESET:-base}
MAX_STEPS=${MAX_STEPS:-150000}
WARMUP=${WARMUP:-10000}
LR=${LR:-1e-3}
BATCH_SECONDS=${BATCH_SECONDS:-400}            # audio seconds per batch and GPU (8 GPUs: ~53 min per step)
BATCH_UTTERANCES=${BATCH_UTTERANCES:-128}
ACCUMULATE=${ACCUMULATE:-1}
WORKERS=${WORKERS:-8}
SAVE_EVERY=${SAVE_EVERY:-2000}
KEEP_EVERY=${KEEP_EVERY:-5000}
VAL_EVERY=${VAL_EVERY:-5000}
AVERAGE=${AVERAGE:-5}                          # the last AVERAGE snapshots are averaged
DECODER=${DECODER:-ctc}
THREADS=${THREADS:-0}
TRAIN_OPTS=${TRAIN_OPTS:-}                     # further `samba train run` options
NPROC=${NPROC:-1}                              # processes (GPUs) per node
NNODES=${NNODES:-1}                            # nodes, or MIN:MAX for an elastic job
RDZV=${RDZV:-localhost:29400}                  # c10d rendezvous endpoint (a host every node reaches)
HF_REPO=${HF_REPO:-}

stage() { [ "$STAGE" -le "$1" ] && [ "$STOP_STAGE" -ge "$1" ]; }
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUN"

if stage 1; then
  echo "stage 1: prepare $DATA"
  download=(); [ "$DOWNLOAD" = 1 ] && download=(--download)
  python "$HERE/prepare.py" "$CORPUS_DIR" "$DATA" --corpus "$CORPUS" "${download[@]}" \
    --train-parts "$TRAIN_PARTS" --dev-parts "$DEV_PARTS" --test-parts "$TEST_PARTS"
fi
if stage 2; then
  echo "stage 2: tokenizer $RUN/tokenizer.model"
  [ -f "$RUN/tokenizer.model" ] ||
    samba train tokenizer "$DATA/cuts_train.jsonl.gz" --out "$RUN/tokenizer.model" --vocab-size "$VOCAB"
fi
if stage 3; then
  echo "stage 3: train $RUN ($NNODES node(s) x $NPROC process(es))"
  launch=(samba)
  if [ "$NPROC" != 1 ] || [ "$NNODES" != 1 ]; then
    launch=(torchrun --nnodes "$NNODES" --nproc-per-node "$NPROC" --rdzv-backend c10d --rdzv-endpoint "$RDZV"
      --rdzv-id "$NAME" --max-restarts 3 "$(command -v samba)")
  fi
  # shellcheck disable=SC2086
  "${launch[@]}" train run "$DATA/cuts_train.jsonl.gz" --dev "$DATA/cuts_dev.jsonl.gz" \
    --tokenizer "$RUN/tokenizer.model" --out "$RUN" --preset "$PRESET" \
    --max-batch-seconds "$BATCH_SECONDS" --max-batch-utterances "$BATCH_UTTERANCES" --accumulate "$ACCUMULATE" \
    --lr "$LR" --warmup-steps "$WARMUP" --max-steps "$MAX_STEPS" --workers "$WORKERS" --threads "$THREADS" \
    --save-every "$SAVE_EVERY" --keep-every "$KEEP_EVERY" --val-every "$VAL_EVERY" $TRAIN_OPTS
fi
if stage 4; then
  echo "stage 4: average the last $AVERAGE snapshots into $RUN/averaged"
  mapfile -t snapshots < <(find "$RUN/snapshots" -mindepth 1 -maxdepth 1 -name 'step-*' | sort | tail -n "$AVERAGE")
  [ "${#snapshots[@]}" -gt 0 ] || { echo "error: no snapshots in $RUN/snapshots (KEEP_EVERY)" >&2; exit 1; }
  rm -rf "$RUN/averaged"
  samba train average "${snapshots[@]}" --out "$RUN/averaged"
fi
if stage 5; then
  echo "stage 5: eval $RUN/averaged on $TEST_PARTS"
  for part in ${TEST_PARTS//,/ }; do
    samba eval "$RUN/averaged" "$DATA/$part.jsonl" --decoder "$DECODER" --report "$RUN/eval-$part.json" \
      --threads "$THREADS"
  done
fi
if stage 6; then
  echo "stage 6: package $RUN/release"
  rm -rf "$RUN/release"
  samba models export "$RUN/averaged" "$RUN/release" --name "${HF_REPO:-$NAME}"
  if [ -n "$HF_REPO" ]; then
    samba models push "$RUN/release" "$HF_REPO"
  else
    echo "set HF_REPO=owner/name (and a write token) to push $RUN/release with samba models push"
  fi
fi
