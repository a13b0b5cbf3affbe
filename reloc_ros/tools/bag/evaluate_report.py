"""Online evaluation, the report: the progress line, the statistics table and the plots.

:func:`write_report` writes ``per_frame.csv``, ``summary.md``, ``summary.json``,
``trajectory.png``, ``errors_over_time.png`` and ``cdf.png`` from an
:class:`~reloc_ros.tools.bag.evaluate_metrics.EvalState`. What each holds:
:mod:`reloc_ros.tools.bag.evaluate`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from reloc_ros.eval.metrics import acc_key
from reloc_ros.eval.report import fmt, markdown_table, pct, write_csv, write_summary
from reloc_ros.tools.bag.evaluate_metrics import EvalState

__all__ = ["progress_line", "table_markdown", "plot_report", "write_report"]


def progress_line(s: dict) -> str:
    """One line of a summary ``s`` (:meth:`~reloc_ros.tools.bag.evaluate_metrics.EvalState.summary`)."""
    thresholds = s["thresholds"]
    tt, rr = thresholds[1] if len(thresholds) > 1 else thresholds[0]
    lat = s["latency_ms"]
    return (
        f"evaluator: {s['accepted']}/{s['frames']} frames estimated, median {s['median_t_m']:.3f} m "
        f"{s['median_r_deg']:.2f}°, ≤{int(tt * 100)}cm,{int(rr)}°: {100 * s[acc_key(tt, rr)]:.1f}%, "
        f"rejected {100 * s['rejection_rate']:.1f}%"
        + (f", latency median {lat['median']:.1f} ms" if lat["count"] else "")
        + (f" ({s['unmatched']} unmatched)" if s["unmatched"] else "")
    ) if s["frames"] else f"evaluator: waiting ({s['poses_received']} poses received)"


# --------------------------------------------------------------------------- the table
def _notes(s: dict) -> list[str]:
    """The sentences under the statistics table of the summary ``s``."""
    lat = s["latency_ms"]
    notes = [
        f"{s['frames']} frames ({'published by the replay' if s['timeline'] else 'all ground-truth frames of the bag'}), "
        f"{s['accepted']} estimated; ground truth: {s['ground_truth_source']}. "
        f"Poses received: {s['poses_received']} ({s['unmatched']} with no ground truth at their stamp, "
        f"{s['duplicates']} repeated, {s['wrong_frame']} in another frame).",
        (f"End-to-end latency (image publish to pose receive), ms: median {lat['median']:.1f}, "
         f"mean {lat['mean']:.1f}, p95 {lat['p95']:.1f}, max {lat['max']:.1f} ({lat['count']} poses)."
         if lat["count"] else "Latency not measured (no replay timeline)."),
    ]
    if math.isfinite(s["cov_trace_median"]):
        notes.append(f"Median covariance trace: {s['cov_trace_median']:.4g}.")
    c = s.get("chi2") or {}
    if c.get("n"):
        notes.append(f"Of the {c['n']} poses, {pct(c['within_chi2_6'])} lie inside the 95% χ²₆ region of their "
                     f"covariance (translation alone {pct(c['within_chi2_t3'])}, rotation alone "
                     f"{pct(c['within_chi2_r3'])}, χ²₃).")
    ip = s.get("initialpose")
    if ip is not None and (ip["received"] or s.get("initialpose_topic")):
        notes.append(f"{s.get('initialpose_topic') or '/initialpose'}: {ip['received']} received, {ip['matched']} "
                     f"matched to the ground truth, {ip['wrong']} more than {ip['wrong_m']:g} m off"
                     + (f" (median {ip['median_t_err_m']:.3f} m, max {ip['max_t_err_m']:.3f} m)"
                        if ip["matched"] else "") + ".")
    return notes


def table_markdown(s: dict, title: str = "") -> str:
    """The statistics table (same columns as :func:`reloc_ros.eval.evaluate.table_markdown`,
    plus latency) with its notes.

    Args:
        s: the summary.
        title: a heading ('' for none).
    """
    thr = [tuple(x) for x in s["thresholds"]]
    head = ["pose topic", "median t (m)", "median r (°)", "mean t (m)", "mean r (°)"] + \
           [f"≤{int(t * 100)}cm,{int(r)}°" for t, r in thr] + ["rejected", "latency median (ms)"]
    cells = [s.get("pose_topic", "online"), fmt(s["median_t_m"]), fmt(s["median_r_deg"], ".2f"),
             fmt(s["mean_t_m"]), fmt(s["mean_r_deg"], ".2f")] + \
            [pct(s[acc_key(t, r)]) for t, r in thr] + [pct(s["rejection_rate"]), fmt(s["latency_ms"]["median"], ".1f")]
    return markdown_table(head, [cells], title or None, _notes(s))


# --------------------------------------------------------------------------- the plots
def _main_plane(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 3x2 projection) onto the plane of the two main axes of the points ``xyz`` (as
    :func:`reloc_ros.eval.evaluate.plot` projects its top view)."""
    mu = xyz.mean(0)
    _, _, Vt = np.linalg.svd(xyz - mu, full_matrices=False)
    P = Vt[:2].T if Vt.shape[0] >= 2 else np.eye(3)[:, :2]
    return mu, P


def _segments(time_s: np.ndarray) -> list[slice]:
    """Runs of frames without a jump in ``time_s`` (a new sequence of the bag starts after a gap)."""
    if time_s.size < 2:
        return [slice(0, time_s.size)]
    dt = np.diff(time_s)
    gap = max(0.5, 5 * float(np.median(dt)))
    cuts = [0] + [i + 1 for i in np.flatnonzero(dt > gap)] + [time_s.size]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _legend(ax, **kw) -> None:
    """A legend on ``ax`` when it has labelled artists."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


class _Series:
    """The per-frame columns the plots draw, as arrays.

    Args:
        rows: the per-frame rows (:meth:`~reloc_ros.tools.bag.evaluate_metrics.EvalState.rows`).
        s: the summary (thresholds, counts).
    """

    def __init__(self, rows: list[dict], s: dict):
        self.ok = np.array([r["status"] == "ok" for r in rows], dtype=bool)
        self.t = np.array([r["t_err_m"] for r in rows], dtype=float)
        self.rot = np.array([r["r_err_deg"] for r in rows], dtype=float)
        self.time_s = np.array([r["time_s"] for r in rows], dtype=float)
        self.gt = np.array([[r["gt_x"], r["gt_y"], r["gt_z"]] for r in rows], dtype=float).reshape(-1, 3)
        self.est = np.array([[r["est_x"], r["est_y"], r["est_z"]] for r in rows], dtype=float).reshape(-1, 3)
        self.thr = [tuple(x) for x in s["thresholds"]]
        self.n = len(rows)
        self.title = f"{s.get('pose_topic', '')}: {s['accepted']}/{s['frames']} frames estimated"

    def errors(self) -> tuple:
        """((axis index, errors, label, threshold lines) for translation, then rotation)."""
        return ((0, self.t, "translation error (m)", sorted({x for x, _ in self.thr})),
                (1, self.rot, "rotation error (°)", sorted({y for _, y in self.thr})))


def _plot_trajectory(plt, d: _Series, out: Path) -> None:
    """``trajectory.png``: top view of the ground truth, estimates and their errors."""
    ok = d.ok
    fig, ax = plt.subplots(figsize=(7, 6))
    if len(d.gt) >= 2:
        mu, P = _main_plane(d.gt)
        g2 = (d.gt - mu) @ P
        for k, seg in enumerate(_segments(d.time_s)):
            ax.plot(g2[seg, 0], g2[seg, 1], "k-", lw=1, label="ground truth" if k == 0 else None)
        if (~ok).any():
            ax.plot(g2[~ok, 0], g2[~ok, 1], "x", color="0.5", ms=5, label=f"rejected ({int((~ok).sum())})")
        if ok.any():
            e2 = (d.est[ok] - mu) @ P
            for a, b in zip(g2[ok], e2):
                ax.plot([a[0], b[0]], [a[1], b[1]], "r-", lw=0.5, alpha=0.6)
            ax.plot(e2[:, 0], e2[:, 1], ".", color="C0", ms=4, label=f"estimate ({int(ok.sum())})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8)
    ax.set_xlabel("m")
    ax.set_ylabel("m")
    ax.set_title("Top view (main plane of the ground-truth trajectory); red: error", fontsize=10)
    fig.suptitle(d.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "trajectory.png", dpi=110)
    plt.close(fig)


def _plot_errors_over_time(plt, d: _Series, out: Path) -> None:
    """``errors_over_time.png``: translation and rotation errors against time, rejections marked."""
    ok, time_s = d.ok, d.time_s
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for i, v, label, lims in d.errors():
        ax = axes[i]
        for k, seg in enumerate(_segments(time_s)):
            m = ok[seg]
            ax.plot(time_s[seg][m], v[seg][m], ".-", ms=3, lw=0.6, color="C0", label="estimate" if k == 0 else None)
        if (~ok).any():
            ax.plot(time_s[~ok], np.zeros(int((~ok).sum())), "|", color="C3", ms=10, label="rejected")
        top = float(np.nanmax(v[ok])) if ok.any() else 1.0
        shown = [lim for lim in lims if lim <= 2 * top]
        for lim in shown:
            ax.axhline(lim, color="0.6", lw=0.6, ls="--")
        ax.set_ylim(-0.04 * max([top] + shown), 1.35 * max([top] + shown))  # room for the legend
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8, loc="upper right", ncol=2)
    axes[1].set_xlabel("time (s, from the first frame's stamp)")
    fig.suptitle(d.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "errors_over_time.png", dpi=110)
    plt.close(fig)


def _plot_cdf(plt, d: _Series, rejection_rate: float, out: Path) -> None:
    """``cdf.png``: error CDFs as a share of all frames (rejected frames never reach 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n = max(1, d.n)
    for i, v, label, lims in d.errors():
        ax = axes[i]
        vv = np.sort(v[d.ok])
        if vv.size:
            ax.step(vv, np.arange(1, vv.size + 1) / n, where="post", color="C0", label="estimate")
            if np.all(vv > 0):
                ax.set_xscale("log")
        for lim in lims:
            ax.axvline(lim, color="0.6", lw=0.6, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("share of frames")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, which="both")
    _legend(axes[0], fontsize=8)
    fig.suptitle(f"Error CDF ({100 * rejection_rate:.1f}% rejected: never reaches 1); " + d.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "cdf.png", dpi=120)
    plt.close(fig)


def plot_report(rows: list[dict], s: dict, out: Path) -> None:
    """Draw ``trajectory.png``, ``errors_over_time.png`` and ``cdf.png`` into ``out``.

    Args:
        rows: the per-frame rows.
        s: the summary.
        out: the report folder.
    """
    import matplotlib  # lazy: matplotlib takes ~0.6 s to import; only the final report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after choosing the Agg backend

    d = _Series(rows, s)
    _plot_trajectory(plt, d, out)
    _plot_errors_over_time(plt, d, out)
    _plot_cdf(plt, d, s["rejection_rate"], out)


def write_report(state: EvalState, out: Path | str, title: str = "", extra: dict | None = None) -> dict:
    """Write per_frame.csv, summary.md, summary.json and the plots into ``out``; returns the summary.

    Args:
        state: the matched estimates.
        out: the report folder.
        title: the table's heading.
        extra: entries added to the summary (pose topic, bag, ...).
    """
    out = Path(out)
    if state.timeline is not None:
        state.timeline.poll()
    rows = state.rows(final=True)
    s = state.summary(final=True, rows=rows)
    s.update(extra or {})
    write_summary(out, table_markdown(s, title), s)
    write_csv(out / "per_frame.csv", rows, list(rows[0]) if rows else ["stamp_ns"])
    plot_report(rows, s, out)
    return s
