"""Markdown tables and run summaries: the one writer of every report the project makes.

The offline and online evaluations, the benchmarks and the Table-3/4 commands all print a
Markdown table and write it, with its data as JSON (and CSV where there are rows), through
these functions. Files are written atomically; JSON turns NaN (not measured) into null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from reloc_ros.core.files import atomic_write_text

__all__ = ["fmt", "pct", "markdown_table", "json_text", "write_text", "write_json", "write_csv",
           "write_summary", "emit"]


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


def write_summary(out: Path | str, markdown: str, data: Any, stem: str = "summary",
                  rows: Sequence[dict] | None = None, rows_name: str = "per_frame.csv") -> list[Path]:
    """A run's summary in ``out``: ``<stem>.md``, ``<stem>.json`` and, with ``rows``, a CSV."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out / f"{stem}.md", markdown), write_json(out / f"{stem}.json", data)]
    if rows is not None:
        paths.append(write_csv(out / rows_name, rows))
    return paths


def emit(markdown: str, out: Path | str | None = None) -> str:
    """Print a report (a benchmark's table) and, when ``out`` is given, write it there."""
    print(markdown)
    if out is not None:
        write_text(out, markdown)
    return markdown
