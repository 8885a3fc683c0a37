"""Is model B better than model A on the same clips? A paired bootstrap over two `samba eval --report` files.

    samba eval MODEL_A data/amazon-queen/dev.jsonl --report a.json
    samba eval MODEL_B data/amazon-queen/dev.jsonl --report b.json
    python benchmarks/paired.py a.json b.json

Prints both word error rates, the difference B - A in points with its 95 % interval (clips drawn with replacement,
the same draw for both systems, WER summed over the drawn clips as `samba eval` sums it), and on how many clips B
made fewer or more word errors than A. An interval that holds 0 means the difference is within noise. Both reports
must cover the same audio files. The "95 %" intervals in docs/bench/history/training-log.md were computed this way (2,000 draws, seed 0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paired:
    wer_a: float  # percent
    wer_b: float
    low: float  # 2.5th percentile of B - A, points
    high: float  # 97.5th percentile
    b_better: int  # clips where B made fewer word errors
    b_worse: int
    clips: int


def _errors_by_audio(report: dict, name: str) -> dict[str, tuple[int, int]]:
    rows = report.get("results")
    if not isinstance(rows, list):
        raise ValueError(f"{name}: no per-clip results (write it with `samba eval ... --report`)")
    return {row["audio"]: (int(row["word_errors"]), int(row["words"])) for row in rows}


def compare(report_a: dict, report_b: dict, draws: int = 2000, seed: int = 0) -> Paired:
    a = _errors_by_audio(report_a, "A")
    b = _errors_by_audio(report_b, "B")
    if sorted(a) != sorted(b):
        only = sorted(set(a) ^ set(b))
        raise ValueError(f"the reports cover different clips ({len(only)} in one only, e.g. {only[0]})")
    keys = sorted(a)
    if not keys:
        raise ValueError("the reports hold no clips")
    errors_a = [a[k][0] for k in keys]
    errors_b = [b[k][0] for k in keys]
    words = [a[k][1] for k in keys]

    def wer(errors: list[int], picked) -> float:
        total = sum(words[i] for i in picked)
        return 100.0 * sum(errors[i] for i in picked) / total if total else 0.0

    rng = random.Random(seed)
    everything = range(len(keys))
    diffs = []
    for _ in range(draws):
        picked = [rng.randrange(len(keys)) for _ in keys]
        diffs.append(wer(errors_b, picked) - wer(errors_a, picked))
    diffs.sort()
    return Paired(
        wer_a=wer(errors_a, everything),
        wer_b=wer(errors_b, everything),
        low=diffs[int(0.025 * draws)],
        high=diffs[int(0.975 * draws) - 1],
        b_better=sum(eb < ea for ea, eb in zip(errors_a, errors_b, strict=True)),
        b_worse=sum(eb > ea for ea, eb in zip(errors_a, errors_b, strict=True)),
        clips=len(keys),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report_a", type=Path)
    parser.add_argument("report_b", type=Path)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        reports = [json.loads(path.read_text(encoding="utf-8")) for path in (args.report_a, args.report_b)]
        result = compare(*reports, draws=args.draws, seed=args.seed)
    except (OSError, ValueError, KeyError) as err:
        print(f"paired.py: {err}", file=sys.stderr)
        return 2
    print(
        f"A {result.wer_a:.2f} %  B {result.wer_b:.2f} %  B-A {result.wer_b - result.wer_a:+.2f} "
        f"(95 % {result.low:+.2f}..{result.high:+.2f}); B better on {result.b_better}, "
        f"worse on {result.b_worse} of {result.clips} clips"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
