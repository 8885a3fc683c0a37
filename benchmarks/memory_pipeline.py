"""Peak memory of the whole tool: `samba transcribe` on a long generated recording, measured from outside.

Generates the same looped speech-and-silence file as memory_windows.py (default 3 hours, 16 kbit/s mp3), runs
`samba transcribe FILE -m MODEL -f json` as a child process and reports its peak RSS (ru_maxrss of the child),
wall time and x real time.

    nice python benchmarks/memory_pipeline.py --model src/samba_cli/assets/models/samba-tiny-en --hours 3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from memory_windows import CODECS, make_input  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or bundled model name")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--codec", choices=sorted(CODECS), default="mp3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decoder", default="attention")
    parser.add_argument("--window-length", type=float, default=None, help="seconds (default: the CLI's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = make_input(Path(directory), args.hours, args.codec)
        command = ["samba", "transcribe", str(path), "-m", args.model, "-f", "json", "-o", directory]
        command += ["--threads", str(args.threads), "--decoder", args.decoder, "-q"]
        if args.window_length:
            command += ["--window-length", str(args.window_length)]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result = json.loads(path.with_suffix(".json").read_text())
    duration = result["duration"]
    print(
        json.dumps(
            {
                "command": " ".join({str(path): "<input>", directory: "<tmp>"}.get(c, c) for c in command),
                "audio_hours": round(duration / 3600, 3),
                "segments": len(result["segments"]),
                "wall_seconds": round(wall, 1),
                "x_real_time": round(duration / wall, 1),
                "peak_rss_mib": round(peak_mib),
            }
        )
    )


if __name__ == "__main__":
    main()
