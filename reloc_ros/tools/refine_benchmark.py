"""Refinement benchmark: accuracy against iterations and time, and the convergence basin, of LM and DRO.

    python -m reloc_ros.tools.refine_benchmark --model model.pt --db db_dense.pt --scene DATA \\
        [--dro dro.pt] [--queries 50] [--iterations 0 1 2 4 8 15] [--dro-iterations 0 1 2 4 8] \\
        [--basin 0.05 0.1 0.2 0.3 0.5 0.75 1.0] --out DIR

Two measurements on the same test queries and the same fused poses, through
:class:`reloc_ros.core.localizer.Localizer` with ``refiner='lm'`` and, given ``--dro``,
``refiner='dro'`` (a database built with ``--dense``):

1. *Accuracy against iterations*: each refiner from the fused pose with k iterations per
   level (LM) or per stage (DRO), for each k of its sweep: median translation and rotation
   error, the share within 5 cm / 5°, and the refinement time per query (DRO's ablation).
   The total iterations (k times the levels or stages) put both on one axis.
2. *Convergence basin*: each refiner from the true pose moved by a known error, for each magnitude
   of ``--basin`` (metres; the rotation is turned by 20° per metre about a random axis,
   the translation along a random direction): the share of queries that end within 5 cm
   and 2°, and the largest initial error at which at least 80 % succeed.

Outputs in ``--out``: ``iterations.csv``, ``basin.csv``, ``summary.md`` (both tables) and
``refine_benchmark.png`` (accuracy against iterations and against time, and the basin).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from reloc_ros.core.database import DatabaseError
from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.data.sevenscenes import SevenScenesError, open_scenes, read_color
from reloc_ros.eval.report import markdown_table, pct, write_csv, write_text

__all__ = ["perturb", "run", "main"]

SUCCESS_T_M, SUCCESS_R_DEG = 0.05, 2.0
ROT_DEG_PER_M = 20.0


def perturb(T_wc: np.ndarray, magnitude_m: float, rng: np.random.Generator) -> np.ndarray:
    """``T`` with its centre moved ``magnitude_m`` along a random direction and turned by
    ``ROT_DEG_PER_M * magnitude_m`` degrees about a random axis (map axes)."""
    d = rng.normal(size=3)
    a = rng.normal(size=3)
    out = T_wc.copy()
    out[:3, 3] += magnitude_m * d / np.linalg.norm(d)
    out[:3, :3] = cv2.Rodrigues(np.radians(ROT_DEG_PER_M * magnitude_m) * a / np.linalg.norm(a))[0] @ T_wc[:3, :3]
    return out


def _set_iterations(loc, k: int) -> None:
    """Set a localizer's refiner to ``k`` iterations per block (LM: per level; DRO: per stage)."""
    loc.refiner.set_iterations(k)
    loc.cfg = replace(loc.cfg, refine_iterations=int(k))


def _stages(loc) -> int:
    """Iteration blocks of a refiner: pyramid levels (LM) or stages (DRO)."""
    return loc.refiner.iteration_blocks()


def run(locs: dict, scenes, queries: int, iterations: dict, basin: list[float], seed: int = 0) -> dict:
    """Both measurements (module docstring) for each refiner of ``locs`` ({'lm': localizer,
    'dro': localizer}, sharing a model and database), on the same queries and fused poses;
    ``iterations``: {refiner: iterations per level or stage}. Returns the tables' rows."""
    first = next(iter(locs.values()))
    items = []
    for sc in scenes:
        frames = sc.frames("test")
        idx = np.unique(np.linspace(0, len(frames) - 1, max(1, queries // len(scenes))).round().astype(int))
        K = sc.color_intrinsics.scaled(*first.refine_image_size).K
        for i in idx:
            fr = frames[i]
            rgb = read_color(fr.color_path)
            items.append((rgb, K, sc.pose(fr), first.fuse(first.hypothesize(rgb))))
    it_rows, basin_rows, basin_80 = [], [], {}
    for name, loc in locs.items():
        cfg0, ref0 = loc.cfg, loc.refiner
        loc.refiner = copy.copy(ref0)  # the sweep changes the copy's iterations only
        for k in iterations[name]:
            _set_iterations(loc, k)
            te, re, ms = [], [], []
            for rgb, K, T_gt, r in items:
                t0 = time.perf_counter()
                out = loc.refine(r, rgb, K)
                ms.append((time.perf_counter() - t0) * 1e3)
                e = pose_errors(out.pose, T_gt) if out.pose is not None else (np.inf, np.inf)
                te.append(float(e[0]))
                re.append(float(e[1]))
            te, re = np.array(te), np.array(re)
            it_rows.append({"refiner": name, "iterations_per_block": int(k), "total_iterations": int(k) * _stages(loc),
                            "median_t_m": float(np.median(te)), "median_r_deg": float(np.median(re)),
                            "within_5cm_5deg": float(np.mean((te <= .05) & (re <= 5))),
                            "ms_per_query": float(np.mean(ms))})
        loc.cfg, loc.refiner = cfg0, ref0
        rng = np.random.default_rng(seed)  # the same starts for every refiner
        for mag in basin:
            ok = []
            for rgb, K, T_gt, r in items:
                start = perturb(T_gt, float(mag), rng)
                out = loc.refine(replace(r, pose=start), rgb, K)
                e = pose_errors(out.pose, T_gt) if out.pose is not None else (np.inf, np.inf)
                ok.append(bool(e[0] <= SUCCESS_T_M and e[1] <= SUCCESS_R_DEG))
            basin_rows.append({"refiner": name, "initial_t_m": float(mag), "initial_r_deg": ROT_DEG_PER_M * float(mag),
                               "success": float(np.mean(ok))})
        reached = [b["initial_t_m"] for b in basin_rows if b["refiner"] == name and b["success"] >= 0.8]
        basin_80[name] = max(reached) if reached else 0.0
    fused = np.array([pose_errors(r.pose, T_gt) for _, _, T_gt, r in items if r.pose is not None]).reshape(-1, 2)
    return {"queries": len(items), "iterations": it_rows, "basin": basin_rows, "basin_80": basin_80,
            "encode_ms": float(np.mean([r.timings_ms["encode"] for *_, r in items])),
            "fused_median_t_m": float(np.median(fused[:, 0])) if len(fused) else float("nan"),
            "fused_median_r_deg": float(np.median(fused[:, 1])) if len(fused) else float("nan")}


def report(res: dict) -> str:
    t1 = markdown_table(["refiner", "iterations per level (lm) / stage (dro)", "total iterations", "median t (m)",
                         "median r (°)", "≤5cm,5°", "ms per query"],
                        [[r["refiner"], r["iterations_per_block"], r["total_iterations"], f"{r['median_t_m']:.3f}",
                          f"{r['median_r_deg']:.2f}", pct(r["within_5cm_5deg"]), f"{r['ms_per_query']:.1f}"]
                         for r in res["iterations"]],
                        f"From the fused pose ({res['queries']} test queries)",
                        [f"The fused poses they start from: median {res['fused_median_t_m']:.3f} m / "
                         f"{res['fused_median_r_deg']:.2f}°. The encoder takes {res['encode_ms']:.1f} ms per query."])
    names = list(res["basin_80"])
    mags = sorted({r["initial_t_m"] for r in res["basin"]})
    t2 = markdown_table(["initial error"] + [f"{n} success (≤5cm, 2°)" for n in names],
                        [[f"{m:.2f} m / {ROT_DEG_PER_M * m:.0f}°"]
                         + [pct(next(r["success"] for r in res["basin"] if r["refiner"] == n and r["initial_t_m"] == m))
                            for n in names] for m in mags],
                        "Convergence basin (from the true pose moved by the initial error)",
                        ["Largest initial error with at least 80 % success: " + ", ".join(
                            f"{n} {b:.2f} m / {ROT_DEG_PER_M * b:.0f}°" for n, b in res["basin_80"].items()) + "."])
    return t1 + "\n" + t2


def plot(res: dict, path: Path) -> None:
    import matplotlib  # lazy: matplotlib (about 1 s) only for this plot; run() and report() go without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for name in res["basin_80"]:
        it = [r for r in res["iterations"] if r["refiner"] == name]
        ax[0].plot([r["total_iterations"] for r in it], [r["median_t_m"] for r in it], "o-", label=name)
        ax[1].plot([r["ms_per_query"] for r in it], [r["median_t_m"] for r in it], "o-", label=name)
        b = [r for r in res["basin"] if r["refiner"] == name]
        ax[2].plot([r["initial_t_m"] for r in b], [r["success"] for r in b], "o-", label=name)
    ax[0].set_xlabel("total iterations")
    ax[0].set_ylabel("median translation error (m)")
    ax[1].set_xlabel("refinement ms per query (2-core CPU)")
    ax[1].set_ylabel("median translation error (m)")
    ax[1].axvline(res["encode_ms"], color="grey", ls=":", label="encoder time")
    for a in ax[:2]:
        a.set_yscale("log")
    ax[2].axhline(0.8, color="grey", ls=":")
    ax[2].set_xlabel(f"initial error (m; {ROT_DEG_PER_M:.0f}° per m)")
    ax[2].set_ylabel("success (≤5 cm, 2°)")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Accuracy against iterations and the convergence basin of LM and DRO")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--db", required=True, type=Path, help="a database built with --dense")
    ap.add_argument("--scene", required=True, type=Path, help="scene folder or dataset root")
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--queries", type=int, default=50, help="test queries in all (evenly spaced per scene)")
    ap.add_argument("--iterations", type=int, nargs="+", default=[0, 1, 2, 3, 4, 6, 8, 15],
                    help="LM iterations per level to sweep")
    ap.add_argument("--dro", type=Path, help="a DRO file: also sweep and test DRO (python -m reloc_train.dro)")
    ap.add_argument("--dro-iterations", type=int, nargs="+", default=[0, 1, 2, 4, 6, 8],
                    help="DRO iterations per stage to sweep")
    ap.add_argument("--basin", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        locs = {"lm": Localizer.from_files(args.model, args.db, LocalizerConfig(refiner="lm"), args.device)}
        if args.dro:
            locs["dro"] = Localizer.from_files(args.model, args.db, LocalizerConfig(refiner="dro"), args.device,
                                               dro_path=args.dro)
        scenes = open_scenes(args.scene, args.scenes)
    except (ModelFileError, DatabaseError, SevenScenesError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = run(locs, scenes, args.queries, {"lm": args.iterations, "dro": args.dro_iterations}, args.basin)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "iterations.csv", res["iterations"])
    write_csv(args.out / "basin.csv", res["basin"])
    md = report(res)
    write_text(args.out / "summary.md", md)
    plot(res, args.out / "refine_benchmark.png")
    print(md)
    print(f"written to {args.out}/ (summary.md, iterations.csv, basin.csv, refine_benchmark.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
