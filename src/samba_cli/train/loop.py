"""The training loop: duration batches -> joint CTC + attention loss -> AdamW, with validation, checkpoints and
exact resume.

Run folder (``TrainConfig.out_dir``)::

    train_config.json   the options (a resumed run must match them, except RUNTIME_FIELDS)
    state.pt            model + optimizer + RNG states + data position (written atomically every save_every);
                        with --distill-targets also the training-only distillation head (never in checkpoints)
    checkpoint/         the latest weights as a model folder (config.json, model.safetensors, tokenizer.model)
    best/               the weights with the best validation WER
    snapshots/step-N/   copies of the weights every keep_every steps (for checkpoint averaging)
    metrics.jsonl       one record per step and per validation

Exact resume: the batch plan of an epoch (ours for JSONL manifests, lhotse's DynamicBucketingSampler for CutSets;
see :mod:`samba_cli.train.epochs`) and every batch's augmentation are functions of (seed, epoch, world size, batch
index) only, the learning rate is a function of the step, and the state is saved at optimizer-step boundaries with
the batches consumed. Resuming from state.pt therefore reproduces the losses of an uninterrupted run. When torchrun
restarts the job with another number of processes (elastic ``--nnodes MIN:MAX``), the interrupted epoch's
remaining batches cannot be shared out as before: training continues with the next epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from samba_cli.device import resolve_device
from samba_cli.model import ModelOutput, save_checkpoint
from samba_cli.options import DecodeOptions, ModelFacts, resolve_decode
from samba_cli.tokenizer import Tokenizer
from samba_cli.train.config import RUNTIME_FIELDS, TrainConfig
from samba_cli.train.data import Batch
from samba_cli.train.distill import Student, batch_distill_loss
from samba_cli.train.distributed import World, close_world, init_world, sum_over_ranks
from samba_cli.train.epochs import TrainData, groups
from samba_cli.train.evaluate import ErrorCounts, count_errors, decode_states, normalize
from samba_cli.train.model_init import initial_model
from samba_cli.train.objective import decoder_io, joint_loss
from samba_cli.train.optim import build_optimizer, learning_rate, set_learning_rate
from samba_cli.train.progress import TrainReporter, format_metrics
from samba_cli.train.state import STATE_FILE, Position, load_state, run_lock, save_state
from samba_cli.train.teacher import TeacherTargets

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
SNAPSHOTS_DIR = "snapshots"

# Called after every optimizer step with the step's record; returning True stops training (after a checkpoint).
StepHook = Callable[[dict], bool]


class Trainer:
    def __init__(self, config: TrainConfig, world: World) -> None:
        self.config = config
        self.world = world
        self.run_dir = Path(config.out_dir)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device, local_rank=world.local_rank)  # cuda: this rank's GPU
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.bf16 = config.bf16 if self.device.type == "cuda" else config.cpu_bf16  # autocast to bfloat16
        if self.bf16:
            # nn.RMSNorm on bfloat16 input with float32 weights takes torch's unfused path, and warns about it
            warnings.filterwarnings(
                "ignore", message="Mismatch dtype between input and weight", module="torch"
            )
        self.tokenizer = Tokenizer(config.tokenizer)
        self.model = initial_model(config, self.tokenizer)
        self.model_config = self.model.config
        # distillation: the model and a training-only head on an encoder block, trained (and synced) together
        self.teacher = TeacherTargets(config.distill_targets) if config.distill_targets else None
        self.student = (
            None if self.teacher is None else Student(self.model, self.teacher.dim, config.distill_layer)
        )
        self.trained: torch.nn.Module = self.model if self.student is None else self.student
        self.trained.to(self.device)
        self.model.set_backend(config.backend)
        self.optimizer = build_optimizer(self.trained, config)
        self.net: torch.nn.Module = self.trained
        if world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.trained, device_ids=ids)
        self.data = TrainData(config, self.tokenizer, self.model_config, self.teacher)
        self.position = Position()
        self.reporter = TrainReporter(config.max_steps, enabled=world.is_main)
        if self.data.lookup_line:
            self.reporter.message(self.data.lookup_line)
        self.stop_requested = False

    # ----------------------------------------------------------------- run folder

    def _open_run(self) -> None:
        """Write train_config.json for a new run, or check it and load state.pt to resume one."""
        config_path = self.run_dir / CONFIG_FILE
        if config_path.is_file():
            saved = TrainConfig.load(config_path).to_dict()
            current = self.config.to_dict()
            changed = sorted(k for k in current if k not in RUNTIME_FIELDS and current[k] != saved.get(k))
            if changed:
                raise ValueError(
                    f"{self.run_dir} holds a run with other options ({', '.join(changed)}); "
                    "use another --out folder or the same options"
                )
        if self.world.is_main:
            self.config.save(config_path)
        state_path = self.run_dir / STATE_FILE
        if state_path.is_file():
            self.position = load_state(state_path, self.model, self.optimizer, self.device, self._head())
            self.reporter.message(
                f"resumed {state_path} at step {self.position.step}, "
                f"epoch {self.position.epoch}, batch {self.position.batch}"
            )
            if self.position.world_size != self.world.size and self.position.batch > 0:
                self.reporter.message(
                    f"{self.position.world_size} process(es) trained epoch {self.position.epoch}, "
                    f"{self.world.size} now: continuing with epoch {self.position.epoch + 1}"
                )
                self.position.epoch += 1
                self.position.batch = 0
        self.position.world_size = self.world.size
        if self.world.is_main:
            self._truncate_metrics(self.position.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records written after the state being resumed (they will be written again)."""
        path = self.run_dir / METRICS_FILE
        if not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _record(self, record: dict) -> None:
        if self.world.is_main:
            with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def _losses(self, out: ModelOutput, batch, targets: torch.Tensor):
        """The joint CTC + attention loss of a batch, as training and validation both compute it."""
        return joint_loss(
            out,
            batch.tokens,
            batch.token_lengths,
            targets,
            self.model_config,
            self.config.ctc_weight,
            self.config.label_smoothing,
            batch.labelled,
        )

    def _head(self) -> torch.nn.Module | None:
        return None if self.student is None else self.student.head

    def _save(self) -> None:
        if not self.world.is_main:
            return
        save_state(self.run_dir / STATE_FILE, self.model, self.optimizer, self.position, self._head())
        self._save_weights("checkpoint", epoch=self.position.epoch)

    def _save_weights(self, folder: str, **metadata) -> None:
        """Model folder (config.json + model.safetensors + tokenizer.model) under the run folder."""
        save_checkpoint(
            self.model,
            self.run_dir / folder,
            tokenizer_file=self.config.tokenizer,
            metadata={
                "step": self.position.step,
                "default_decoder": self.position.default_decoder,
                **metadata,
                "train": self.config.to_dict(),
            },
        )

    # ----------------------------------------------------------------- steps

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_step(self, batches: list[Batch]) -> dict:
        """One optimizer step over ``accumulate`` batches; returns the step's record."""
        config = self.config
        lr = learning_rate(self.position.step, config)
        set_learning_rate(self.optimizer, lr)
        self.net.train()
        totals = {"loss": 0.0, "ctc": 0.0, "attention": 0.0}
        if self.student is not None:
            totals["distill"] = 0.0
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or self.world.size == 1 else self.net.no_sync()
            with sync:
                with self._autocast():
                    inputs, targets = decoder_io(batch.tokens, batch.token_lengths, self.model_config)
                    out = self.net(batch.features, batch.lengths, inputs)
                    distill = None
                    if self.student is not None:
                        out, predicted = out
                        distill = batch_distill_loss(predicted, batch, out.encoder_lengths)
                    losses = self._losses(out, batch, targets)
                    total = losses.total
                    if distill is not None:
                        total = total + config.distill_weight * distill
                        totals["distill"] += float(distill.detach()) / len(batches)
                # a batch lhotse repeated (see cuts.DUPLICATE) still runs, for DDP's gradient sync, with weight 0
                weight = 0.0 if batch.repeated else 1.0
                (total * weight / len(batches)).backward()
            totals["loss"] += float(total.detach()) / len(batches)
            totals["ctc"] += float(losses.ctc) / len(batches)
            totals["attention"] += float(losses.attention) / len(batches)
        max_norm = config.clip_grad_norm if config.clip_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trained.parameters(), max_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            self.reporter.message(f"step {self.position.step}: non-finite gradient norm, update skipped")
        self.optimizer.zero_grad(set_to_none=True)
        # Under DDP, the step's losses are the mean over ranks and its counts the sum (the whole step's).
        loss, ctc, attention, distill, utterances, seconds = sum_over_ranks(
            [
                totals["loss"],
                totals["ctc"],
                totals["attention"],
                totals.get("distill", 0.0),
                sum(len(b) for b in batches if not b.repeated),
                sum(b.seconds for b in batches if not b.repeated),
            ],
            self.device,
            self.world,
        )
        size = self.world.size
        return {
            "loss": loss / size,
            "ctc": ctc / size,
            "attention": attention / size,
            **({} if self.student is None else {"distill": distill / size}),
            "lr": lr,
            "grad_norm": grad_norm,
            "utterances": round(utterances),
            "seconds": seconds,
        }

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss and greedy WER/CER on this rank's share of the dev set, summed over ranks."""
        self.model.eval()
        sums = {"loss": 0.0, "ctc": 0.0, "attention": 0.0}
        tokens = 0
        ctc_errors, att_errors = ErrorCounts(), ErrorCounts()
        # greedy decoding of each kind, resolved as `samba eval` resolves (no model folder yet: no language model)
        greedy_ctc, greedy_attention = (
            resolve_decode(DecodeOptions(decoder=d), ModelFacts()) for d in ("ctc", "attention")
        )
        for batch in self.data.dev_batches(self.world):
            batch = batch.to(self.device)
            with self._autocast():
                states, lengths = self.model.encode(batch.features, batch.lengths)
                inputs, targets = decoder_io(batch.tokens, batch.token_lengths, self.model_config)
                out = ModelOutput(
                    self.model.ctc_logits(states), lengths, self.model.decode(inputs, states, lengths)
                )
                losses = self._losses(out, batch, targets)
                ctc_hyps = decode_states(self.model, states, lengths, greedy_ctc)
                att_hyps = (
                    decode_states(self.model, states, lengths, greedy_attention)
                    if self.config.val_attention
                    else []
                )
            sums["loss"] += float(losses.total) * losses.tokens
            sums["ctc"] += float(losses.ctc) * losses.tokens
            sums["attention"] += float(losses.attention) * losses.tokens
            tokens += losses.tokens
            references = [normalize(self.data.dev_set[i].text) for i in batch.indices]
            for reference, hyp in zip(references, ctc_hyps, strict=True):
                ctc_errors += count_errors(reference, normalize(self.tokenizer.decode(hyp)))
            for reference, hyp in zip(references, att_hyps, strict=False):
                att_errors += count_errors(reference, normalize(self.tokenizer.decode(hyp)))
        values = [*sums.values(), tokens, *dataclasses.astuple(ctc_errors), *dataclasses.astuple(att_errors)]
        reduced = sum_over_ranks(values, self.device, self.world)
        loss, ctc, att, tokens = reduced[:4]
        ctc_errors = ErrorCounts(*(int(v) for v in reduced[4:8]))
        att_errors = ErrorCounts(*(int(v) for v in reduced[8:12]))
        record = {
            "val_loss": loss / max(1, tokens),
            "val_ctc": ctc / max(1, tokens),
            "val_attention": att / max(1, tokens),
            "val_wer_ctc": ctc_errors.wer,
            "val_cer_ctc": ctc_errors.cer,
        }
        if self.config.val_attention:
            record.update(val_wer_attention=att_errors.wer, val_cer_attention=att_errors.cer)
        return record

    def _validate_and_keep_best(self) -> None:
        if not self.data.dev_set:
            return
        record = self.validate()
        wer = min(record["val_wer_ctc"], record.get("val_wer_attention", math.inf))  # the better decoder
        if "val_wer_attention" in record:
            better_ctc = record["val_wer_ctc"] < record["val_wer_attention"]
            self.position.default_decoder = "ctc" if better_ctc else "attention"
        self._record({"step": self.position.step, "epoch": self.position.epoch, **record})
        self.reporter.message(f"validation step {self.position.step}: {format_metrics(record)}")
        if wer < self.position.best_wer:
            self.position.best_wer = wer
            if self.world.is_main:
                self._save_weights("best", val=record)

    def _should_stop(self, record: dict, on_step: StepHook | None) -> bool:
        if on_step is not None and on_step(record):
            self.stop_requested = True
        flag = sum_over_ranks([float(self.stop_requested)], self.device, self.world)[0]
        return flag > 0

    def _report(self, record: dict, steps: int, audio_seconds: float, started: float) -> None:
        """Progress bar status every step; a full line every log_every steps. ``steps`` and ``audio_seconds``
        count this session's work since ``started``."""
        step, total = record["step"], self.config.max_steps
        elapsed = time.perf_counter() - started
        rate = steps / elapsed
        self.reporter.update(step, f"loss {record['loss']:.3f} lr {record['lr']:.2e} {rate:.3f} steps/s")
        if step % self.config.log_every and step != total:
            return
        values = {k: v for k, v in record.items() if k not in ("step", "epoch")}
        self.reporter.message(
            f"step {step}/{total} epoch {record['epoch']} | {format_metrics(values)} | {rate:.3f} steps/s | "
            f"{audio_seconds / elapsed:.1f} audio s/s | eta {(total - step) / rate / 60:.1f} min"
        )

    # ----------------------------------------------------------------- main loop

    def run(self, on_step: StepHook | None = None) -> Path:
        """Train to max_steps or a stop request; the main rank holds the run folder's lock meanwhile."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir) if self.world.is_main else contextlib.nullcontext():
            return self._run(on_step)

    def _run(self, on_step: StepHook | None) -> Path:
        config = self.config
        self._open_run()
        self.reporter.message(
            f"model {config.init_from or config.preset}: {self.model.num_parameters() / 1e6:.2f}M parameters, vocab "
            f"{self.model_config.vocab_size}, device {self.device}, {self.world.size} process(es); "
            f"{f'{len(self.data.train_set)} training utterances' if self.data.train_set else config.train_manifest}, "
            f"{len(self.data.dev_set)} dev"
        )
        done_at_start = self.position.step
        audio_seconds = 0.0
        started = time.perf_counter()
        while self.position.step < config.max_steps:
            trained = False
            batches = self.data.epoch_batches(self.position.epoch, self.position.batch, self.world)
            for group, epoch_done in groups(batches, config.accumulate):
                trained = True
                record = self._train_step(group)
                self.position.step += 1
                self.position.batch += len(group)
                audio_seconds += record["seconds"]
                record = {"step": self.position.step, "epoch": self.position.epoch, **record}
                self._record(record)
                self._report(record, self.position.step - done_at_start, audio_seconds, started)
                finished = self.position.step >= config.max_steps
                if (
                    epoch_done
                    or finished
                    or (config.val_every and self.position.step % config.val_every == 0)
                ):
                    self._validate_and_keep_best()
                if epoch_done:
                    self.position.epoch += 1
                    self.position.batch = 0
                stop = self._should_stop(record, on_step)
                if stop or finished or self.position.step % config.save_every == 0:
                    self._save()
                if config.keep_every and self.position.step % config.keep_every == 0 and self.world.is_main:
                    self._save_weights(
                        f"{SNAPSHOTS_DIR}/step-{self.position.step:06d}", epoch=self.position.epoch
                    )
                if stop:
                    self.reporter.message(
                        f"stopped at step {self.position.step}; rerun the same command to resume"
                    )
                    self.reporter.close()
                    return self.run_dir
                if finished or epoch_done:
                    break
            if not trained:
                raise ValueError(
                    "an epoch holds no batches for this process: too little data between --min-duration and "
                    "--max-duration, or fewer batches than accumulate x processes; lower --accumulate or "
                    "--max-batch-seconds"
                )
        self.reporter.message(f"done: {self.position.step} steps; weights in {self.run_dir / 'checkpoint'}")
        self.reporter.close()
        return self.run_dir


def train(config: TrainConfig, on_step: StepHook | None = None) -> Path:
    """Train (or resume) the run in ``config.out_dir``; SIGTERM/SIGINT stop it after a checkpoint, and then
    KeyboardInterrupt is raised (the run folder is complete: rerunning resumes)."""
    world = init_world()
    try:
        trainer = Trainer(config, world)
        signalled: list[int] = []

        def request_stop(signum, frame) -> None:
            trainer.stop_requested = True
            signalled.append(signum)

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            run_dir = trainer.run(on_step)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signalled:
            raise KeyboardInterrupt
        return run_dir
    finally:
        close_world(world)
