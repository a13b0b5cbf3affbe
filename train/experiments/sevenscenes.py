"""The reference paper's protocol on a copy of Microsoft 7-Scenes, in one command.

    python -m reloc_train.experiments.sevenscenes --data /data/7scenes --out runs/7scenes
    python -m reloc_train.experiments.sevenscenes --data /data/7scenes --out runs/7scenes --methods uniform,aligned_ub --seeds 0 1 2

What it does:

1. checks the dataset root: each scene folder (all seven by default) with its official
   ``TrainSplit.txt`` / ``TestSplit.txt`` and every sequence they name, with intrinsics
   and image files readable. A missing piece stops the command before any training, with
   a message that names the folder and the problem;
2. trains, for every method and seed, ONE network on the training sequences of all the
   scenes together (``config/train.yaml``: ResNet-34 at 256×341, ImageNet initialisation,
   30 epochs), through :func:`reloc_train.experiments.table4.main` (an interrupted run resumes);
3. evaluates every test frame of every scene (top-1 retrieval + relative pose, and the
   oracle-neighbour regression) and writes the Table-4 layout: per-scene medians, their
   mean, and R against Uniform (:mod:`reloc_train.evaluate`) into ``OUT/report``.

The paper reports, as the mean of per-scene medians, Uniform 0.79 m / 9.39° to Aligned-MTL
on Z 0.34 m / 9.30°. ``--set`` overrides any training key (e.g. ``run.workers=8``); the
test suite runs the mechanics on the 12-frame stairs sample with a tiny network.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from reloc_ros.data.sevenscenes import SEVEN_SCENES, Dataset, SevenScenesError
from reloc_train.experiments import table4

log = logging.getLogger("reloc_train.experiments.sevenscenes")

__all__ = ["check_dataset", "main"]


def check_dataset(root: Path | str, scenes: list[str]) -> dict[str, dict]:
    """Open and check every scene of ``scenes`` under ``root``; per scene the frame counts.

    Raises :class:`~reloc_ros.data.sevenscenes.SevenScenesError` (naming the folder) when a
    scene, a split file, a sequence or a frame's files are missing or unreadable. Image
    content is checked on the first frame of each sequence only (a full decode of 7-Scenes
    takes minutes); the loaders skip nothing silently later.
    """
    ds = Dataset(root)
    missing = [s for s in scenes if s not in ds.names]
    if missing:
        raise SevenScenesError(Path(root), f"missing scene folder(s) {', '.join(missing)} "
                                           f"(found {', '.join(ds.names) or 'none'})")
    out = {}
    for name in scenes:
        sc = ds[name]
        counts = {}
        for split in ("train", "test"):
            seqs = sc.sequences(split)
            if not seqs:
                raise SevenScenesError(sc.root, f"the {split} split names no sequence")
            frames = sc.frames(split)
            if not frames:
                raise SevenScenesError(sc.root, f"the {split} split has no frame")
            for seq in seqs:
                first = next((f for f in frames if f.seq == seq), None)
                if first is None:
                    raise SevenScenesError(sc.seq_dir(seq), "sequence has no frame")
                sc.pose(first), sc.color(first)
            counts[split] = len(frames)
        sc.color_intrinsics
        out[name] = counts
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description="The reference paper's 7-Scenes protocol (train + Table 4)",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="7-Scenes root (holds chess/, fire/, ...)")
    ap.add_argument("--out", type=Path, required=True, help="runs go to OUT/<method>/seed<k>, the report to OUT/report")
    ap.add_argument("--scenes", default=",".join(SEVEN_SCENES), help="comma list (default: all seven)")
    ap.add_argument("--methods", default="paper", help="'paper' (the 8 methods of Table 4), 'all' or a comma list")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--config", action="append", default=[], type=Path, help="YAML over config/train.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--jobs", type=int, default=1, help="trainings in parallel (one per GPU is sensible)")
    args = ap.parse_args(argv)
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    try:
        counts = check_dataset(args.data, scenes)
    except (SevenScenesError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, c in counts.items():
        log.info("%s: %d training and %d test frames", name, c["train"], c["test"])
    t0 = time.time()
    sets = [f"data.scenes=[{','.join(scenes)}]", "data.train_split=train", "data.val_split=test"] + args.set
    exp = ["--data", str(args.data), "--out", str(args.out), "--methods", args.methods, "--jobs", str(args.jobs),
           "--report", str(args.out / "report"), "--seeds", *map(str, args.seeds)]
    for c in args.config:
        exp += ["--config", str(c)]
    for s in sets:
        exp += ["--set", s]
    rc = table4.main(exp)
    log.info("protocol finished in %.0f s (rc %d); report: %s", time.time() - t0, rc, args.out / "report" / "table4.md")
    return rc


if __name__ == "__main__":
    sys.exit(main())
