"""Load time and memory of word language models, each load in a fresh process, as a decoding process sees it.

    python benchmarks/lm_load.py src/samba_cli/assets/models/samba-tiny-en/lm.arpa.gz data/general-lm/lm.arpa.gz \
        --runs 3 --out docs/bench/lm/load.json

For each ARPA file: one process that parses it (an empty cache folder, so it parses and writes the parsed copy),
then ``--runs`` processes that read the parsed copy, alternating between the files so that a busy machine
penalises them alike. Each process reports the seconds `samba_cli.decoding.lm.load_lm` took (what every decoding
process, the main one and each search worker, pays once) and its peak RSS after the load, beside that of a
process that only imported the module. Results: JSON rows on stdout, and a list of them in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from samba_cli.decoding.lm import load_lm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
lm = load_lm(sys.argv[1]) if sys.argv[1] else None
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_mib": rss / 1024, "import_rss_mib": before / 1024,
                  "words": len(lm.vocab) if lm else 0}))
"""


def load_once(path: str, cache: Path) -> dict:
    """One fresh process that loads ``path`` with the parsed-copy cache in ``cache``."""
    env = {**os.environ, "SAMBA_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, path], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lms", nargs="+", help="ARPA files (plain or gzip)")
    parser.add_argument("--runs", type=int, default=3, help="cached loads per file")
    parser.add_argument("--out", type=Path, help="also write the rows here, as a JSON list")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        caches = {lm: Path(tmp) / str(i) for i, lm in enumerate(args.lms)}
        plan = [(lm, "parse") for lm in args.lms] + [
            (lm, "cached") for _ in range(args.runs) for lm in args.lms
        ]
        for lm, kind in plan:
            row = {"lm": lm, "load": kind, **load_once(lm, caches[lm])}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
