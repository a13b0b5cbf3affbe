"""Map coverage of 7-Scenes-format scenes or of 7-Scenes pose lists (see :mod:`reloc_ros.data.coverage`).

    python -m reloc_ros.tools.coverage data/7scenes            # a dataset root, or one scene folder
    python -m reloc_ros.tools.coverage ../shared/data/7scenes-poses --stride 10
    python -m reloc_ros.tools.coverage data/synth --json

For each scene: its training and test frame counts, then, for its test frames against its
training frames (the map), the median distance and rotation of the oracle neighbour (the
map frame minimising d + r/30°) and the shares of test frames with a map frame within
0.5 m and 30° and within 0.25 m and 15°. Then the mean over the scenes, beside real
7-Scenes' figures: run it on your own map to see whether it is dense enough to relocalize in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reloc_ros.data.coverage import REAL_7SCENES, Coverage, coverage, read_pose_list
from reloc_ros.data.sevenscenes import SevenScenesError, open_scenes
from reloc_ros.eval.report import fmt, json_text, markdown_table, pct

__all__ = ["path_coverage", "mean_coverage", "coverage_table", "main"]


def _pose_lists(folder: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for train in sorted(folder.glob("*_train.txt")):
        test = train.with_name(train.name.replace("_train.txt", "_test.txt"))
        if test.is_file():
            out[train.name[: -len("_train.txt")]] = (train, test)
    return out


def path_coverage(path: Path | str, query_stride: int = 1) -> list[Coverage]:
    """Coverage per scene of a 7-Scenes scene folder, a dataset root, or a folder of pose lists.

    Raises:
        SevenScenesError: neither a scene, a dataset root nor a folder of pose lists.
    """
    path = Path(path)
    lists = _pose_lists(path) if path.is_dir() else {}
    if lists:
        out = []
        for name, (train, test) in lists.items():
            _, T_map = read_pose_list(train)
            _, T_q = read_pose_list(test)
            out.append(coverage(T_map, T_q, name, query_stride))
        return out
    return [coverage(sc.poses(sc.frames("train")), sc.poses(sc.frames("test")), sc.name, query_stride)
            for sc in open_scenes(path)]


def mean_coverage(rows: list[Coverage], name: str = "mean") -> Coverage:
    """The mean of each figure over scenes (frame counts summed)."""
    m = {k: float(np.mean([getattr(r, k) for r in rows])) for k in
         ("median_d_m", "median_r_deg", "within_50cm_30deg", "within_25cm_15deg")}
    return Coverage(name, sum(r.frames for r in rows), sum(r.queries for r in rows), **m)


def coverage_table(rows: list[Coverage], title: str | None = None) -> str:
    """Markdown table: the scenes, their mean, and real 7-Scenes for reference."""
    body = rows + ([mean_coverage(rows)] if len(rows) > 1 else []) + [REAL_7SCENES]
    cells = [[r.name, r.frames or "", r.queries or "", fmt(r.median_d_m), fmt(r.median_r_deg, ".1f"),
              pct(r.within_50cm_30deg), pct(r.within_25cm_15deg)] for r in body]
    return markdown_table(["scene", "map frames", "queries", "median d of the oracle neighbour (m)", "median r (°)",
                           "a map frame within 0.5 m and 30°", "within 0.25 m and 15°"], cells, title)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Map coverage of 7-Scenes-format scenes or of 7-Scenes pose lists")
    ap.add_argument("path", type=Path, help="a scene folder, a dataset root, or a folder of <scene>_{train,test}.txt")
    ap.add_argument("--stride", type=int, default=1, help="use every N-th test frame as a query (default: all)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        rows = path_coverage(args.path, args.stride)
    except (SevenScenesError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json_text([r.as_dict() for r in rows]) if args.json else coverage_table(rows, f"Coverage of {args.path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
