"""Markdown tables and run summaries: the one writer of every report the project makes.

The offline and online evaluations, the benchmarks and the Table-3/4 commands all print a
Markdown table and write it, with its data as JSON (and CSV where there are rows), through
these functions. Files are written atomically; JSON turns NaN (not measured) into null.

Every results folder (and every single-file report) gets the command that wrote it beside it
(:func:`record_command`: ``command.json`` or ``<report>.command.json``), with the code's commit,
so that each table in ``docs/`` can be traced to the run and the code that made it.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from reloc_ros.core.files import atomic_write_text

__all__ = ["fmt", "pct", "markdown_table", "json_text", "write_text", "write_json", "write_csv",
           "write_summary", "emit", "record_command", "code_commit"]

_REPO = Path(__file__).resolve().parents[2]


def fmt(v: Any, spec: str = ".3f") -> str:
    """``format(v, spec)``, or ``"n/a"`` for None and non-finite numbers."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def pct(v: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage (``"12.5%"``), ``"n/a"`` when not finite."""
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
                   notes: Sequence[str] = (), level: int = 3) -> str:
    """A Markdown table: optional ``#``-title, the header, the rows (cells as given, str()),
    then one paragraph per note."""
    lines = [f"{'#' * level} {title}", ""] if title else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines.append("")
        lines += list(notes)
    return "\n".join(lines) + "\n"


def _finite_or_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    return v


def json_text(obj: Any) -> str:
    """Standard JSON (NaN and inf, i.e. not measured, become null; other objects str())."""
    return json.dumps(_finite_or_none(obj), indent=2, default=str)


def write_text(path: Path | str, text: str) -> Path:
    atomic_write_text(path, text)
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json_text(obj))


def write_csv(path: Path | str, rows: Sequence[dict], fieldnames: Sequence[str] | None = None) -> Path:
    """One row per dict; non-finite floats become empty cells; keys not in ``fieldnames``
    are left out."""
    keys = list(fieldnames) if fieldnames is not None else (list(rows[0]) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
    return write_text(path, buf.getvalue())


@functools.cache
def code_commit() -> dict:
    """``{"commit", "dirty"}`` of the checkout this code runs from (``"commit": None`` when it
    is not a git checkout, e.g. an installed package)."""
    try:
        head = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def record_command(out: Path | str) -> Path:
    """Write the command line of this process and the code's commit beside a result.

    Args:
        out: a results folder (the record is ``out/command.json``) or a report file (the
            record is ``<out without suffix>.command.json``).
    """
    out = Path(out)
    path = out / "command.json" if out.is_dir() else out.with_name(out.stem + ".command.json")
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return write_json(path, {"command": " ".join(shlex.quote(a) for a in argv), **code_commit(),
                             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                             "python": platform.python_version(), "machine": platform.machine(),
                             "cpus": len(os.sched_getaffinity(0))})


def write_summary(out: Path | str, markdown: str, data: Any, stem: str = "summary",
                  rows: Sequence[dict] | None = None, rows_name: str = "per_frame.csv") -> list[Path]:
    """A run's summary in ``out``: ``<stem>.md``, ``<stem>.json``, with ``rows`` a CSV, and the
    command that wrote them (:func:`record_command`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out / f"{stem}.md", markdown), write_json(out / f"{stem}.json", data)]
    if rows is not None:
        paths.append(write_csv(out / rows_name, rows))
    paths.append(record_command(out))
    return paths


def emit(markdown: str, out: Path | str | None = None) -> str:
    """Print a report (a benchmark's table) and, when ``out`` is given, write it there with the
    command that wrote it (:func:`record_command`)."""
    print(markdown)
    if out is not None:
        write_text(out, markdown)
        record_command(out)
    return markdown
