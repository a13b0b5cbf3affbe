r"""Depth registered to colour for RGB-D scenes whose depth camera is not the colour camera.

A Kinect (and the real 7-Scenes) records depth with its own camera: other intrinsics (f = 585
against the colour camera's 525 in 7-Scenes) and a baseline of a few centimetres. Sampling that
depth at a colour keypoint's pixel puts the point in the wrong place. This module holds the
depth-to-colour calibration of a scene, fits it, and checks it:

- :class:`DepthToColor` is the calibration: the depth camera's intrinsics (in ``intrinsics.yaml``
  under ``depth``) and the rigid transform ``T_color_depth`` (depth-camera coordinates to
  colour-camera coordinates, metres, optical axes), recorded in the scene's ``intrinsics.yaml``
  under ``depth_to_color``. :class:`reloc_ros.data.sevenscenes.Scene` then returns depth
  registered to colour (:func:`register_depth`), and, where the pose files are the depth
  camera's (``pose_camera: depth``, as in 7-Scenes), colour-camera poses:

  .. math::  T_{w,c} = T_{w,d}\, T_{c,d}^{-1}

- :func:`fit_from_poses` estimates ``T_color_depth`` from frames that have both cameras' poses
  (for 7-Scenes, the dataset's depth-camera poses and the colour-camera poses published with
  Brachmann et al., ICCV 2021): the chordal mean of the per-frame offsets
  :math:`T_{w,d}^{-1} T_{w,c}`, with their spread.
- :func:`match_residuals` is the check that the fit does not use: colour keypoints matched
  between two map frames, lifted with one frame's depth, moved with the poses and projected
  into the other frame. Registered depth brings them closer to their matches.

Command line::

    python -m reloc_ros.data.rgbd fit --scene ../shared/data/independent \
        --color-poses ../shared/data/7scenes-poses/redkitchen_train.txt \
        --frame-map ../shared/data/independent/frames.csv --out data/redkitchen_rgbd
    python -m reloc_ros.data.rgbd check --scene data/redkitchen_rgbd --sequences 5 7

``fit`` reads the training split only. ``--out`` writes a scene folder of links to the original
sequences and split files, with its own ``intrinsics.yaml`` (a read-only dataset stays
untouched); without ``--out`` the scene's own ``intrinsics.yaml`` is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.files import atomic_write_text
from reloc_ros.core.geometry import invert, is_rigid
from reloc_ros.data.registration import reproject_depth

__all__ = ["DepthToColor", "fit_from_poses", "register_depth", "match_residuals", "write_scene_view", "main"]

#: Which camera a scene's pose files describe (``pose_camera`` in ``intrinsics.yaml``).
POSE_CAMERAS = ("color", "depth")


@dataclass(frozen=True)
class DepthToColor:
    """The rigid transform from depth-camera to colour-camera coordinates.

    Attributes:
        T_color_depth: (4, 4) ``X_color = T_color_depth @ X_depth`` (metres, optical axes).
        source: how it was obtained (a command, or a published value), for people.
    """

    T_color_depth: np.ndarray
    source: str = ""

    def __post_init__(self):
        T = np.asarray(self.T_color_depth, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)) or not is_rigid(T, 1e-6):
            raise ValueError(f"depth_to_color must be a rigid 4x4 transform, got {T.tolist()}")
        if np.linalg.norm(T[:3, 3]) > 1.0:
            raise ValueError(f"depth_to_color baseline {np.linalg.norm(T[:3, 3]):.3f} m is not a camera rig's")
        object.__setattr__(self, "T_color_depth", T)

    def as_dict(self) -> dict:
        return {"T_color_depth": [[round(float(v), 9) for v in row] for row in self.T_color_depth],
                "source": self.source}

    @classmethod
    def from_dict(cls, d) -> "DepthToColor":
        """Inverse of :meth:`as_dict`; ValueError on a bad entry."""
        if not isinstance(d, dict) or "T_color_depth" not in d:
            raise ValueError("depth_to_color needs a 'T_color_depth' 4x4 matrix")
        try:
            T = np.array(d["T_color_depth"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"depth_to_color T_color_depth is not a 4x4 matrix ({e})") from None
        return cls(T, str(d.get("source", "")))


def _project_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        R = U @ np.diag([1.0, 1.0, -1.0]) @ Vt
    return R


def fit_from_poses(T_w_depth_N44: np.ndarray, T_w_color_N44: np.ndarray) -> tuple[DepthToColor, dict]:
    """``T_color_depth`` from frames whose depth-camera and colour-camera poses are both known.

    Each frame gives the offset :math:`T_{d,c} = T_{w,d}^{-1} T_{w,c}`; the result is their
    chordal mean (rotation: the SVD projection of the mean matrix; translation: the mean),
    inverted. Returns ``(calibration, spread)``: the RMS and largest deviation of the frames'
    offsets from the mean, in mm and degrees, and the frame count.
    """
    Td = np.asarray(T_w_depth_N44, dtype=np.float64)
    Tc = np.asarray(T_w_color_N44, dtype=np.float64)
    if Td.shape != Tc.shape or Td.ndim != 3 or len(Td) < 1:
        raise ValueError(f"need matching (N, 4, 4) pose stacks, got {Td.shape} and {Tc.shape}")
    off = np.einsum("nij,njk->nik", np.stack([invert(T) for T in Td]), Tc)
    # pose files hold rotations to ~1e-4 (7-Scenes'); make each orthonormal before comparing
    off[:, :3, :3] = np.stack([_project_rotation(R) for R in off[:, :3, :3]])
    T_dc = np.eye(4)
    T_dc[:3, :3] = _project_rotation(off[:, :3, :3].mean(0))
    T_dc[:3, 3] = off[:, :3, 3].mean(0)
    dt = np.linalg.norm(off[:, :3, 3] - T_dc[:3, 3], axis=1) * 1e3
    cos = (np.einsum("nij,ij->n", off[:, :3, :3], T_dc[:3, :3]) - 1) / 2
    dr = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    spread = {"frames": int(len(Td)), "rms_mm": float(np.sqrt(np.mean(dt ** 2))), "max_mm": float(dt.max()),
              "rms_deg": float(np.sqrt(np.mean(dr ** 2))), "max_deg": float(dr.max()),
              "baseline_mm": float(np.linalg.norm(T_dc[:3, 3]) * 1e3),
              "angle_deg": float(np.degrees(np.arccos(np.clip((np.trace(T_dc[:3, :3]) - 1) / 2, -1, 1))))}
    return DepthToColor(invert(T_dc)), spread


def register_depth(depth_m_HW: np.ndarray, depth_intr: Intrinsics, color_intr: Intrinsics,
                   calib: DepthToColor) -> np.ndarray:
    """Depth (float32 metres, NaN where unknown) seen by the colour camera, at the colour size.

    Args:
        depth_m_HW: the depth camera's image, metres (NaN or <= 0 invalid), at ``depth_intr``'s size.
        depth_intr, color_intr: the two cameras' intrinsics.
        calib: the depth-to-colour transform.

    Every valid depth pixel is moved into the colour camera and splatted at its nearest pixel
    with a z-buffer (:func:`reloc_ros.data.registration.reproject_depth`); colour pixels no depth
    pixel lands on (the baseline's disocclusions) stay NaN.
    """
    d = np.asarray(depth_m_HW, dtype=np.float64)
    if d.shape != (depth_intr.height, depth_intr.width):
        raise ValueError(f"depth image {d.shape[1]}x{d.shape[0]} differs from the depth intrinsics' "
                         f"{depth_intr.width}x{depth_intr.height}")
    mm = np.where(np.isfinite(d) & (d > 0) & (d < 65.0), np.rint(d * 1000.0), 0).astype(np.uint16)
    out = reproject_depth(mm, depth_intr.K, color_intr.K, (color_intr.width, color_intr.height),
                          calib.T_color_depth).astype(np.float32) / 1000.0
    out[out <= 0] = np.nan
    return out


# --------------------------------------------------------------------------- the check
def match_residuals(scene, pairs: Sequence[tuple], max_px: float = 8.0, size: tuple[int, int] = (640, 480)
                    ) -> np.ndarray:
    """Reprojection residuals (pixels at ``size``) of SIFT keypoints matched between map frames.

    For each pair ``(a, b)`` of :class:`~reloc_ros.data.sevenscenes.Frame`: SIFT keypoints of
    both colour images, matched with the ratio test (0.75) and a mutual check, are lifted with
    ``a``'s depth (``scene.depth``, registered when the scene has a calibration), moved with the
    two frames' poses (``scene.pose``) and projected into ``b`` with the colour intrinsics; the
    residual is the distance to the matched keypoint. Residuals above ``max_px`` are dropped
    as mismatches (the same bound for every variant compared)."""
    from reloc_ros.core.pnp import lift  # lazy: the check only; the data layer may use the core

    K = scene.color_intrinsics.scaled(*size).K
    sift = cv2.SIFT_create(nfeatures=1500)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    out = []
    for a, b in pairs:
        ga, gb = (cv2.resize(cv2.cvtColor(scene.color(f), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
                  for f in (a, b))
        ka, da = sift.detectAndCompute(ga, None)
        kb, db = sift.detectAndCompute(gb, None)
        if da is None or db is None or len(ka) < 2 or len(kb) < 2:
            continue
        fwd = bf.knnMatch(da, db, k=2)
        back = {m.queryIdx: m.trainIdx for m in bf.match(db, da)}
        good = [p[0] for p in fwd if len(p) == 2 and p[0].distance < 0.75 * p[1].distance
                and back.get(p[0].trainIdx) == p[0].queryIdx]
        if not good:
            continue
        ua = np.array([ka[m.queryIdx].pt for m in good])
        ub = np.array([kb[m.trainIdx].pt for m in good])
        xyz, ok = lift(ua, scene.depth(a), K, size)
        Xw = (scene.pose(a)[:3, :3] @ xyz[ok].T.astype(np.float64)).T + scene.pose(a)[:3, 3]
        Tb = invert(scene.pose(b))
        Xb = (Tb[:3, :3] @ Xw.T).T + Tb[:3, 3]
        front = Xb[:, 2] > 1e-3
        uv = (K @ (Xb[front] / Xb[front, 2:3]).T).T[:, :2]
        r = np.linalg.norm(uv - ub[ok][front], axis=1)
        out.append(r[r <= max_px])
    return np.concatenate(out) if out else np.zeros(0)


def check_pairs(scene, sequences: Sequence[int], gap: int = 8, stride: int = 15) -> list[tuple]:
    """Pairs ``(frame i, frame i + gap)`` every ``stride`` frames within each sequence."""
    pairs = []
    for s in sequences:
        fr = scene.frames([s])
        pairs += [(fr[i], fr[i + gap]) for i in range(0, len(fr) - gap, stride)]
    return pairs


# --------------------------------------------------------------------------- writing a scene view
def write_scene_view(scene, out: Path | None, camera: dict) -> Path:
    """Write ``intrinsics.yaml`` with ``camera`` (a mapping in the scene-metadata format) into
    ``out``, a folder of links to ``scene``'s sequences and split files (``None``: into the
    scene itself). Returns the folder."""
    import yaml  # lazy: only the writer needs it

    from reloc_ros.data.sevenscenes import INTRINSICS_FILE, SPLIT_FILES  # lazy: sevenscenes imports this module

    root = Path(scene.root)
    if out is None:
        out = root
    else:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        src = Path(os.path.abspath(root))
        for name in [*SPLIT_FILES.values(), *(f"seq-{s:02d}" for s in scene.sequences("all"))]:
            link = out / name
            if link.is_symlink() or link.exists():
                if link.resolve() == (src / name).resolve():
                    continue
                raise FileExistsError(f"{link}: exists and is not a link to {src / name}")
            link.symlink_to(src / name)
    atomic_write_text(out / INTRINSICS_FILE, yaml.safe_dump(camera, sort_keys=False))
    return out


def _color_poses(scene, frames, pose_list: Path, frame_map: Path | None) -> np.ndarray:
    from reloc_ros.data.coverage import read_pose_list  # lazy: the fit command only

    names, P = read_pose_list(pose_list)
    by_name = dict(zip(names, P))
    mapping = {}
    if frame_map is not None:
        with open(frame_map, newline="") as f:
            for row in csv.DictReader(f):
                mapping[(int(row["sequence"]), int(row["frame"]))] = (int(row.get("source_sequence") or 1),
                                                                       int(row["source_frame"]))
    out = []
    for fr in frames:
        seq, idx = mapping.get((fr.seq, fr.index), (fr.seq, fr.index))
        name = f"seq-{seq:02d}/frame-{idx:06d}.color.png"
        if name not in by_name:
            raise ValueError(f"{pose_list}: no pose for {name} (frame {fr.id})")
        out.append(by_name[name])
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    from reloc_ros.data.sevenscenes import Scene, SevenScenesError  # lazy: sevenscenes imports this module

    ap = argparse.ArgumentParser(description="Depth-to-colour calibration of an RGB-D scene")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit T_color_depth on the training split and record it")
    f.add_argument("--scene", required=True, type=Path)
    f.add_argument("--color-poses", required=True, type=Path,
                   help="colour-camera poses, a 7scenes-poses list ('name qw qx qy qz tx ty tz f')")
    f.add_argument("--frame-map", type=Path, help="CSV sequence,frame,source_frame: the list's frame of each")
    f.add_argument("--split", default="train", help="the frames the fit reads: a split name or sequence "
                   "numbers such as 1,2,4 (default: train)")
    f.add_argument("--out", type=Path, help="write a linked scene folder here (default: the scene itself)")
    c = sub.add_parser("check", help="reprojection residuals of matched keypoints between map frames")
    c.add_argument("--scene", required=True, type=Path)
    c.add_argument("--sequences", type=int, nargs="+", required=True)
    c.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    try:
        scene = Scene(args.scene)
        if args.cmd == "fit":
            split = [int(v) for v in args.split.split(",")] if args.split[0].isdigit() else args.split
            frames = scene.frames(split)
            Td = np.stack([scene.raw_pose(fr) for fr in frames])
            calib, spread = fit_from_poses(Td, _color_poses(scene, frames, args.color_poses, args.frame_map))
            calib = DepthToColor(calib.T_color_depth,
                                 f"fitted on {len(frames)} frames of split {args.split} of {scene.root} "
                                 f"against {args.color_poses.name} (python -m reloc_ros.data.rgbd fit)")
            cam = scene.camera
            meta = {"format_version": 2, "color": cam["color"].as_dict(), "depth": cam["depth"].as_dict(),
                    "depth_registered": False, "pose_camera": "depth", "depth_to_color": calib.as_dict()}
            out = write_scene_view(scene, args.out, meta)
            print(f"depth-to-colour: baseline {spread['baseline_mm']:.2f} mm, rotation {spread['angle_deg']:.3f} deg, "
                  f"spread over {spread['frames']} frames rms {spread['rms_mm']:.3f} mm / {spread['rms_deg']:.4f} deg "
                  f"(max {spread['max_mm']:.3f} mm / {spread['max_deg']:.4f} deg); written to {out}")
        else:
            raw = Scene(args.scene)
            raw.__dict__["camera"] = {**scene.camera, "depth_to_color": None, "pose_camera": "color"}
            pairs = check_pairs(scene, args.sequences)
            res = {}
            for name, sc in (("unregistered", raw), ("registered", scene)):
                r = match_residuals(sc, pairs)
                res[name] = {"matches": int(len(r)), "median_px": float(np.median(r)) if len(r) else float("nan"),
                             "mean_px": float(np.mean(r)) if len(r) else float("nan"),
                             "within_2px": float(np.mean(r <= 2)) if len(r) else float("nan")}
                print(f"{name:13s} {len(pairs)} pairs, {len(r)} matches within 8 px: median {res[name]['median_px']:.2f} px, "
                      f"mean {res[name]['mean_px']:.2f} px, {100 * res[name]['within_2px']:.1f} % within 2 px")
            if args.json:
                atomic_write_text(args.json, json.dumps({"sequences": args.sequences, "pairs": len(pairs), **res},
                                                        indent=1))
    except (SevenScenesError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
