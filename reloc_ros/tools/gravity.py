"""Estimate the gravity alignment of a visual map from its camera poses alone.

    python -m reloc_ros.tools.gravity data/7scenes/chess            # a scene, a dataset root ...
    python -m reloc_ros.tools.gravity ../shared/data/7scenes-poses  # ... or 7-Scenes pose lists

7-Scenes' world frame (and a map built by SLAM without an IMU) is not gravity-aligned, while a
navigation ``map`` is (REP-103: z up). For users who have no alignment between the two yet,
this prints, per scene, the up direction estimated from the map's training cameras
(:func:`reloc_ros.core.geometry.estimate_up`), how well it is supported (the median tilt of the
cameras' x axes from the horizontal), and the rotation of the static TF ``map -> reloc_map``
that makes the visual map's up +z, with the command that publishes it. The translation and
the heading about z are left at zero: they are the user's choice of where the map starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reloc_ros.core.geometry import estimate_up, gravity_alignment, matrix_to_quat
from reloc_ros.data.coverage import read_pose_list
from reloc_ros.data.sevenscenes import SevenScenesError, open_scenes
from reloc_ros.tools.coverage import _pose_lists
from reloc_ros.eval.report import json_text, markdown_table

__all__ = ["scene_poses", "alignments", "main"]


def scene_poses(path: Path | str) -> dict[str, np.ndarray]:
    """The training (map) camera poses (N, 4, 4) per scene of a scene folder, a dataset root,
    or a folder of ``<scene>_{train,test}.txt`` pose lists (as the coverage command reads)."""
    path = Path(path)
    lists = _pose_lists(path) if path.is_dir() else {}
    if lists:
        return {name: read_pose_list(train)[1] for name, (train, _) in lists.items()}
    return {sc.name: sc.poses(sc.frames("train")) for sc in open_scenes(path)}


def alignments(path: Path | str, frame_id: str = "map", child_frame_id: str = "reloc_map") -> list[dict]:
    """Per scene: frames, up vector, median tilt (°) and the ``map -> reloc_map`` quaternion."""
    out = []
    for name, poses in scene_poses(path).items():
        up, tilt = estimate_up(poses)
        q_wxyz = matrix_to_quat(gravity_alignment(up))
        out.append({"scene": name, "frames": len(poses), "up": [float(v) for v in up], "tilt_deg": tilt,
                    "frame_id": frame_id, "child_frame_id": child_frame_id,
                    "quaternion_xyzw": [float(q_wxyz[1]), float(q_wxyz[2]), float(q_wxyz[3]), float(q_wxyz[0])]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Gravity alignment (map -> reloc_map) of a visual map from its cameras")
    ap.add_argument("path", type=Path, help="a scene folder, a dataset root, or a folder of <scene>_train.txt")
    ap.add_argument("--frame-id", default="map", help="the gravity-aligned parent frame")
    ap.add_argument("--child-frame-id", default="reloc_map", help="the visual map's frame")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        rows = alignments(args.path, args.frame_id, args.child_frame_id)
    except (SevenScenesError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.path}: no scene and no <scene>_train.txt pose list", file=sys.stderr)
        return 2
    if args.json:
        print(json_text(rows))
        return 0
    cells = [[r["scene"], r["frames"], " ".join(f"{v:+.3f}" for v in r["up"]), f"{r['tilt_deg']:.1f}",
              " ".join(f"{v:+.4f}" for v in r["quaternion_xyzw"])] for r in rows]
    print(markdown_table(["scene", "map frames", "up (world)", "median tilt of camera x (°)",
                          f"{args.frame_id} -> {args.child_frame_id} quaternion (x y z w)"], cells,
                         f"Gravity alignment of {args.path}"))
    for r in rows:
        x, y, z, w = r["quaternion_xyzw"]
        print(f"{r['scene']}: ros2 run tf2_ros static_transform_publisher --qx {x:.6f} --qy {y:.6f} --qz {z:.6f} "
              f"--qw {w:.6f} --frame-id {r['frame_id']} --child-frame-id {r['child_frame_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
