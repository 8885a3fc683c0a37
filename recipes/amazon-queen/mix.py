#!/usr/bin/env python3
"""Build one training manifest from several: each source repeated or sampled, one speaker capped.

    python recipes/amazon-queen/mix.py runs/mix.jsonl \
        data/amazon-queen/train.jsonl:2 data/synthetic-en/train.jsonl:0.4 --cap JOE=900 --seed 0

``MANIFEST:FACTOR``: a factor of 2 lists every line twice (oversampling), 0.4 keeps a seeded 40 % sample.
``--cap SPEAKER=N`` keeps a seeded sample of N lines of that speaker (before the factor). Audio paths become
absolute, so the mixed manifest can live anywhere. Written to a temporary file, then renamed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from samba_cli.atomic import write_atomically


def read(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["audio"] = str((path.parent / row["audio"]).resolve())
            rows.append(row)
    return rows


def mix(sources: list[tuple[Path, float]], caps: dict[str, int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for path, factor in sources:
        rows = read(path)
        for speaker, cap in caps.items():
            theirs = [r for r in rows if r.get("speaker") == speaker]
            if len(theirs) > cap:
                keep = {id(r) for r in rng.sample(theirs, cap)}
                rows = [r for r in rows if r.get("speaker") != speaker or id(r) in keep]
        whole, part = int(factor), factor - int(factor)
        out += rows * whole
        if part > 0:
            out += rng.sample(rows, round(part * len(rows)))
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("sources", nargs="+", help="MANIFEST:FACTOR")
    ap.add_argument("--cap", action="append", default=[], help="SPEAKER=N")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sources = []
    for spec in args.sources:
        path, _, factor = spec.rpartition(":")
        if not path or not Path(path).is_file():
            print(f"error: {spec}: expected an existing MANIFEST:FACTOR", file=sys.stderr)
            return 2
        sources.append((Path(path), float(factor)))
    caps = {k: int(v) for k, _, v in (c.partition("=") for c in args.cap)}
    rows = mix(sources, caps, args.seed)
    write_atomically(args.out, lambda stream: stream.writelines(json.dumps(r) + "\n" for r in rows))
    hours = sum(r["duration"] for r in rows) / 3600
    print(f"{args.out}: {len(rows)} utterances, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
