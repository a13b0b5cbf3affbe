"""Evaluate trained runs and write the paper's Table-4 layout, as text, CSV and Markdown, with plots.

    python -m reloc_train.evaluate runs/*/ --out docs/results [--data DIR] [--max-frames 500]

Each run folder holds a ``model.pt`` (and ``history.csv`` for the weight curves). Runs are
grouped by their MTL method (from the model file); seeds of one method are averaged. For
each scene: the median translation error (m) and rotation error (°) of top-1 retrieval +
relative pose on the test split; then their mean over scenes, and the improvement ratio
of the paper, ``R = 1 − P_method / P_uniform``, for translation and rotation
(positive = better than uniform).

Outputs in ``--out``: ``table4.csv`` (one row per method and scene, with per-seed values),
``table4.md``, ``per_run.csv``, ``bars.png`` (per-method bars with seed spread) and
``weights.png`` (task-weight curves over training).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from reloc_ros.data.sevenscenes import open_scenes
from reloc_ros.core.device import resolve_device
from reloc_ros.core.model import load_model
from reloc_train.dataset import FrameSet, ImageStore
from reloc_ros.eval.report import markdown_table, pct, write_csv, write_summary
from reloc_train.validate import validate

log = logging.getLogger("reloc_train.evaluate")

#: display order of the methods (the paper's order, then the extras)
ORDER = ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned", "aligned_ub",
         "imtl_g", "cagrad", "upgrad"]
LABELS = {"uniform": "Uniform", "uncertainty": "Uncertainty", "mgda": "MGDA", "mgda_ub": "MGDA-UB",
          "gradnorm": "GradNorm", "pcgrad": "PCGrad", "aligned": "Aligned θ", "aligned_ub": "Aligned Z",
          "imtl_g": "IMTL-G", "cagrad": "CAGrad", "upgrad": "UPGrad"}


def evaluate_runs(runs: list[Path], data: str | None, max_frames: int | None, device: str) -> list[dict]:
    """Re-evaluate each run's model; one dict per run with per-scene medians."""
    dev = resolve_device(device)
    cache: dict = {}
    rows = []
    for run in runs:
        model, info = load_model(run / "model.pt", dev)
        td = info.meta.get("training_data", {})
        root = data or td.get("root")
        scenes_key = (root, tuple(td.get("scenes") or []), info.config.input_size)
        if scenes_key not in cache:
            scenes = open_scenes(root, td.get("scenes") or None)
            tr = FrameSet.from_scenes(scenes, "train")
            te = FrameSet.from_scenes(scenes, "test")
            size = info.config.input_size
            cache[scenes_key] = (tr, ImageStore(tr, size), te, ImageStore(te, size))
        tr, trs, te, tes = cache[scenes_key]
        res = validate(model, tr, trs, te, tes, dev, max_frames)
        seed = info.meta.get("train_config", {}).get("run", {}).get("seed")
        rows.append({"run": str(run), "method": info.meta.get("mtl_method", "?"), "seed": seed,
                     "scenes": res["scenes"]})
        m = res["mean"]
        log.info("%s (%s, seed %s): %.3f m / %.2f deg", run, rows[-1]["method"], seed,
                 m["median_t_m"], m["median_r_deg"])
    return rows


#: retrieval columns of the table (shares of test frames; see reloc_train.validate)
RECALLS = ["recall_at_1", "recall_at_5", "oracle_recall"]

#: The two ways of reading the results: (prefix of the metric keys, baseline row, baseline prefix).
VARIANTS = {
    "retrieval": ("", "retrieval-only", "retrieval_"),
    "oracle": ("oracle_", "neighbour pose", "oracle_neighbour_"),
}


def aggregate(rows: list[dict], variant: str = "retrieval") -> tuple[list[str], list[str], dict]:
    """methods, scenes, table[method][scene] = {t, r, t_std, r_std, n, t_seeds, r_seeds}.

    ``variant`` 'retrieval': top-1 retrieval + regression, with retrieval-only as the
    baseline row; 'oracle': regression from the nearest training frame by ground truth, with
    that frame's own pose as the baseline row.
    """
    prefix, base_name, base_prefix = VARIANTS[variant]
    by: dict = defaultdict(lambda: defaultdict(lambda: {"t": [], "r": [], **{k: [] for k in RECALLS}}))
    scenes: list[str] = []
    for r in rows:
        for sc, s in r["scenes"].items():
            if sc not in scenes:
                scenes.append(sc)
            by[r["method"]][sc]["t"].append(s[f"{prefix}median_t_m"])
            by[r["method"]][sc]["r"].append(s[f"{prefix}median_r_deg"])
            for k in RECALLS:
                by[r["method"]][sc][k].append(s.get(k, float("nan")))
            by[base_name][sc]["t"].append(s[f"{base_prefix}median_t_m"])
            by[base_name][sc]["r"].append(s[f"{base_prefix}median_r_deg"])
    methods = [m for m in ORDER if m in by] + sorted(m for m in by if m not in ORDER and m != base_name)
    methods.append(base_name)
    table: dict = {}
    for m in methods:
        table[m] = {}
        for sc in scenes:
            t, r = np.array(by[m][sc]["t"]), np.array(by[m][sc]["r"])
            table[m][sc] = {"t": float(t.mean()), "r": float(r.mean()), "t_std": float(t.std()),
                            "r_std": float(r.std()), "n": len(t), "t_seeds": t.tolist(), "r_seeds": r.tolist()}
            for k in RECALLS:
                table[m][sc][k] = float(np.mean(by[m][sc][k])) if by[m][sc][k] else float("nan")
        table[m]["mean"] = {"t": float(np.mean([table[m][s]["t"] for s in scenes])),
                            "r": float(np.mean([table[m][s]["r"] for s in scenes])),
                            "n": table[m][scenes[0]]["n"] if scenes else 0,
                            **{k: float(np.mean([table[m][s][k] for s in scenes])) for k in RECALLS}}
    if "uniform" in table:
        u = table["uniform"]["mean"]
        for m in methods:
            table[m]["mean"]["R_t"] = 1 - table[m]["mean"]["t"] / u["t"]
            table[m]["mean"]["R_r"] = 1 - table[m]["mean"]["r"] / u["r"]
    return methods, scenes, table


def table4_markdown(methods, scenes, table, title: str, note: str, recall: bool = True) -> str:
    rows = []
    for m in methods:
        c = table[m]["mean"]
        rec = [pct(c["recall_at_1"]), pct(c["recall_at_5"])] if recall and m in ORDER else ["", ""]
        rows.append([LABELS.get(m, m)] + [f"{table[m][sc]['t']:.3f} m / {table[m][sc]['r']:.2f}°" for sc in scenes]
                    + [f"**{c['t']:.3f} m / {c['r']:.2f}°**", f"{c['R_t']:+.2f}" if "R_t" in c else "",
                       f"{c['R_r']:+.2f}" if "R_r" in c else ""] + (rec if recall else []) + [str(c["n"])])
    head = ["Method"] + scenes + ["Mean", "R_t", "R_r"] + (["recall@1", "recall@5"] if recall else []) + ["runs"]
    notes = [note]
    if recall and methods:
        o = np.nanmean([table[m]["mean"]["oracle_recall"] for m in methods if m in ORDER] or [np.nan])
        notes.append(f"recall@k: the share of test frames with a training frame within 0.5 m and 30° among the k "
                     f"retrieved by the method's own descriptor; the oracle recall (the map has such a frame) "
                     f"is {pct(o)}.")
    return markdown_table(head, rows, title, notes)


def method_sentences(methods: list[str], table: dict) -> list[str]:
    """One measured sentence per method: what it did to t, q and retrieval against Uniform."""
    if "uniform" not in table:
        return []
    u = table["uniform"]["mean"]
    out = []
    for m in methods:
        if m == "uniform" or m not in ORDER:
            continue
        c = table[m]["mean"]

        def rel(key, unit, spec):
            d = c[key] / u[key] - 1
            word = "same as" if abs(d) < 0.02 else "better than" if d < 0 else "worse than"
            return f"{c[key]:{spec}}{unit} ({d:+.0%}, {word} Uniform's {u[key]:{spec}}{unit})"

        dr = 100 * (c["recall_at_5"] - u["recall_at_5"])
        out.append(f"- **{LABELS.get(m, m)}**: translation {rel('t', ' m', '.3f')}; rotation {rel('r', '°', '.2f')}; "
                   f"recall@5 {pct(c['recall_at_5'])} ({dr:+.1f} points).")
    return out


NOTES = {
    "retrieval": "Cells: median translation / rotation error per scene, averaged over seeds. R = 1 − P_method / "
                 "P_uniform on the mean (positive: better than Uniform). retrieval-only: the pose of the top-1 "
                 "retrieved training frame, with no regression.",
    "oracle": "Regression from the oracle neighbour (the training frame that minimises d + r/30°, "
              "reloc_ros.data.coverage) instead of the retrieved one: the relative-pose regression alone, which "
              "is what the MTL methods change. neighbour pose: that frame's own pose, the baseline the "
              "regression must beat.",
}
TITLES = {
    "retrieval": "Top-1 retrieval + relative-pose regression (the paper's Table 4 setting)",
    "oracle": "Relative-pose regression from the oracle neighbour",
}


def write_outputs(out: Path, rows: list[dict], tables: dict, title: str) -> str:
    """tables: variant -> (methods, scenes, table). Writes the CSVs, the Markdown and the JSON."""
    keys = ["median_t_m", "median_r_deg", "retrieval_median_t_m", "retrieval_median_r_deg",
            "oracle_median_t_m", "oracle_median_r_deg", "oracle_neighbour_median_t_m",
            "oracle_neighbour_median_r_deg"] + RECALLS
    write_csv(out / "per_run.csv", [{"run": r["run"], "method": r["method"], "seed": r["seed"], "scene": sc,
                                     **{k: f"{s[k]:.4f}" for k in keys}}
                                    for r in rows for sc, s in r["scenes"].items()])
    t4 = []
    for variant, (methods, scenes, table) in tables.items():
        for m in methods:
            for sc in scenes:
                c = table[m][sc]
                t4.append({"variant": variant, "method": m, "scene": sc, "median_t_m": f"{c['t']:.4f}",
                           "median_r_deg": f"{c['r']:.3f}", "t_std": f"{c['t_std']:.4f}",
                           "r_std": f"{c['r_std']:.3f}", "seeds": c["n"]})
            c = table[m]["mean"]
            t4.append({"variant": variant, "method": m, "scene": "mean", "median_t_m": f"{c['t']:.4f}",
                       "median_r_deg": f"{c['r']:.3f}", "t_std": "", "r_std": "", "seeds": c["n"]})
    write_csv(out / "table4.csv", t4)
    md = f"## {title}\n\n" + "\n".join(table4_markdown(*tables[v], TITLES[v], NOTES[v], recall=v == "retrieval")
                                         for v in tables)
    if "retrieval" in tables:
        lines = method_sentences(tables["retrieval"][0], tables["retrieval"][2])
        if lines:
            md += "\n### What each method did, against Uniform (top-1 setting, mean over scenes)\n\n" \
                + "\n".join(lines) + "\n"
    write_summary(out, md, {v: {"methods": m, "scenes": sc, "table": t} for v, (m, sc, t) in tables.items()},
                  stem="table4")
    return md


def plot(out: Path, rows: list[dict], tables: dict) -> None:
    import matplotlib  # lazy: matplotlib (about 1 s) only for the plots; the tables go without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    methods = next(iter(tables.values()))[0]
    fig, axes = plt.subplots(len(tables), 2, figsize=(max(8, 1.1 * len(methods) + 2), 4 * len(tables)),
                             squeeze=False)
    for row, (variant, (methods, scenes, table)) in zip(axes, tables.items()):
        _bars(row, methods, scenes, table, TITLES[variant])
    fig.suptitle("Mean over scenes of per-scene median errors (bars: seed std)")
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=120)
    plt.close(fig)
    _weight_curves(out, rows, methods)


def _bars(axes, methods, scenes, table, title) -> None:
    x = np.arange(len(methods))
    for ax, key, unit in ((axes[0], "t", "m"), (axes[1], "r", "deg")):
        vals = [table[m]["mean"][key] for m in methods]
        # spread over seeds of the scene-mean
        spreads = []
        for m in methods:
            per_seed = np.array([table[m][s][f"{key}_seeds"] for s in scenes]).mean(axis=0)
            spreads.append(per_seed.std() if per_seed.size > 1 else 0.0)
        colors = ["0.6" if m == "retrieval-only" else f"C{i % 10}" for i, m in enumerate(methods)]
        ax.bar(x, vals, yerr=spreads, color=colors, capsize=3)
        ax.set_xticks(x, [LABELS.get(m, m) for m in methods], rotation=45, ha="right")
        ax.set_ylabel(f"median {'translation' if key == 't' else 'rotation'} error ({unit})")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(title, fontsize=9)


def _weight_curves(out: Path, rows: list[dict], methods: list[str]) -> None:
    import matplotlib.pyplot as plt  # lazy: as in plot(), which calls this after choosing the Agg backend

    curves = defaultdict(list)
    for r in rows:
        h = Path(r["run"]) / "history.csv"
        if h.is_file():
            with open(h) as f:
                recs = list(csv.DictReader(f))
            if recs:
                curves[r["method"]].append(recs)
    if not curves:
        return
    ms = [m for m in methods if m in curves]
    cols = min(4, len(ms))
    nrow = int(np.ceil(len(ms) / cols))
    fig, axes = plt.subplots(nrow, cols, figsize=(3.6 * cols, 2.8 * nrow), squeeze=False)
    for ax, m in zip(axes.flat, ms):
        for recs in curves[m]:
            step = np.array([float(r["step"]) for r in recs])
            for k, c in (("weight_t", "C0"), ("weight_q", "C3"), ("weight_r", "C2")):
                if k in recs[0]:
                    v = np.array([float(r[k]) for r in recs])
                    n = max(1, len(v) // 50)
                    ax.plot(step[n - 1:], np.convolve(v, np.ones(n) / n, "valid"),
                            color=c, alpha=0.6, lw=1, label=k.split("_")[1] if recs is curves[m][0] else None)
        ax.set_title(LABELS.get(m, m))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ms):]:
        ax.axis("off")
    fig.suptitle("Task weights over training (t: translation, q: rotation, r: retrieval; one line per seed)")
    fig.tight_layout()
    fig.savefig(out / "weights.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description="Table-4 style evaluation of trained runs")
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (each with model.pt)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", help="dataset root (default: the one recorded in each model file)")
    ap.add_argument("--max-frames", type=int, default=None, help="test queries per scene (default all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--title", default="Relative-pose MTL methods: median errors")
    args = ap.parse_args(argv)
    runs = [r for r in args.runs if (r / "model.pt").is_file()]
    if not runs:
        print("no run folder with a model.pt given", file=sys.stderr)
        return 2
    rows = evaluate_runs(runs, args.data, args.max_frames, args.device)
    tables = {v: aggregate(rows, v) for v in VARIANTS}
    md = write_outputs(args.out, rows, tables, args.title)
    plot(args.out, rows, tables)
    print(md)
    print(f"written: {args.out}/table4.md, table4.csv, per_run.csv, bars.png, weights.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
