"""One torchrun worker of the DDP tests: trains the TrainConfig in argv[1] with the tiny test preset, logging the
cut ids of every optimizer step to argv[2]/rank-R.jsonl. With argv[3] = N > 0, the process dies (exit 1, no
checkpoint) right after step N, as on a crashed node."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samba_cli.model import PRESETS  # noqa: E402
from samba_cli.train.config import TrainConfig  # noqa: E402
from samba_cli.train.loop import Trainer, train  # noqa: E402
from tests.model_helpers import TINY  # noqa: E402


def main() -> None:
    config = TrainConfig.load(Path(sys.argv[1]))
    log = Path(sys.argv[2]) / f"rank-{os.environ['RANK']}.jsonl"
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    PRESETS["test"] = TINY
    train_step = Trainer._train_step

    def logged_step(trainer, batches):
        record = {
            "step": trainer.position.step + 1,
            "epoch": trainer.position.epoch,
            "ids": [batch.ids for batch in batches],
        }
        with log.open("a") as out:
            out.write(json.dumps(record) + "\n")
        return train_step(trainer, batches)

    def crash(record: dict) -> bool:
        if record["step"] == kill_at:
            os._exit(1)
        return False

    Trainer._train_step = logged_step
    train(config, on_step=crash)
    # Leave without interpreter finalization (gloo's destructors have aborted a finished rank here).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
