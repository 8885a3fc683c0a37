"""Stage 0-1 of recipes/librispeech/run.sh: a lhotse corpus -> CutSets for training and JSONL manifests for eval.

    python recipes/librispeech/prepare.py CORPUS_DIR DATA_DIR [--download] [--corpus librispeech]
        [--train-parts P,...] [--dev-parts P,...] [--test-parts P,...]

Writes DATA_DIR/cuts_train.jsonl.gz (all training parts), DATA_DIR/cuts_dev.jsonl.gz (all dev parts), and for each
test part DATA_DIR/PART.jsonl, the project's manifest that `samba eval` reads. Any lhotse corpus whose recipe is
``lhotse.recipes.prepare_NAME(corpus_dir, dataset_parts=..., output_dir=...)`` works with --corpus NAME and its
part names. Finished work is skipped (marker file DATA_DIR/.prepared).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parts(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def cutset(manifests: dict, part: str):
    from lhotse import CutSet

    if part not in manifests:
        raise SystemExit(f"error: the corpus has no part {part!r} (found: {', '.join(sorted(manifests))})")
    entry = manifests[part]
    cuts = CutSet.from_manifests(entry["recordings"], entry["supervisions"])
    return cuts.trim_to_supervisions(keep_overlapping=False)


def write_eval_manifest(cuts, path: Path) -> int:
    """One {"audio", "text", "duration"} line per cut; the cuts must be whole single-file recordings."""
    lines = []
    for cut in cuts:
        recording = cut.recording
        if len(recording.sources) != 1 or recording.sources[0].type != "file" or cut.start > 0.0:
            raise SystemExit(
                f"error: {cut.id}: not a whole audio file; `samba eval` needs one file per utterance"
            )
        if abs(cut.duration - recording.duration) > 0.01:
            raise SystemExit(f"error: {cut.id}: covers part of its recording; `samba eval` needs whole files")
        text = " ".join(s.text for s in cut.supervisions)
        audio = str(Path(recording.sources[0].source).resolve())
        lines.append(json.dumps({"audio": audio, "text": text, "duration": round(cut.duration, 3)}))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return len(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--corpus", default="librispeech", help="lhotse recipe name")
    parser.add_argument("--download", action="store_true", help="download the parts first (lhotse download)")
    parser.add_argument(
        "--train-parts", type=parts, default=parts("train-clean-100,train-clean-360,train-other-500")
    )
    parser.add_argument("--dev-parts", type=parts, default=parts("dev-clean,dev-other"))
    parser.add_argument("--test-parts", type=parts, default=parts("test-clean,test-other"))
    args = parser.parse_args(argv)

    marker = args.data_dir / ".prepared"
    if marker.is_file():
        print(f"{args.data_dir}: prepared already ({marker})")
        return
    from lhotse import CutSet, recipes

    wanted = args.train_parts + args.dev_parts + args.test_parts
    if args.download:
        getattr(recipes, f"download_{args.corpus}")(args.corpus_dir.parent, dataset_parts=wanted)
    prepare = getattr(recipes, f"prepare_{args.corpus}", None)
    if prepare is None:
        raise SystemExit(f"error: lhotse has no recipe prepare_{args.corpus}")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    manifests = prepare(args.corpus_dir, dataset_parts=wanted, output_dir=args.data_dir / "manifests")
    for name, group in (("train", args.train_parts), ("dev", args.dev_parts)):
        cuts = CutSet.from_cuts(cut for part in group for cut in cutset(manifests, part))
        cuts.to_file(args.data_dir / f"cuts_{name}.jsonl.gz")
        print(
            f"{args.data_dir}/cuts_{name}.jsonl.gz: {len(cuts)} cuts, {sum(c.duration for c in cuts) / 3600:.2f} h"
        )
    for part in args.test_parts:
        count = write_eval_manifest(cutset(manifests, part), args.data_dir / f"{part}.jsonl")
        print(f"{args.data_dir}/{part}.jsonl: {count} utterances")
    marker.write_text("done\n")


if __name__ == "__main__":
    sys.exit(main())
