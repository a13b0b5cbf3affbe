"""Training configuration: YAML defaults, layered YAML files, and ``--set a.b=value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS = Path(__file__).resolve().parents[1] / "config" / "train.yaml"


def _installed_defaults() -> Path:
    """config/train.yaml next to the sources, or under share/reloc_ros when installed."""
    if DEFAULTS.is_file():
        return DEFAULTS
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("reloc_ros")) / "config" / "train.yaml"
    except Exception:  # not a ROS install either
        raise FileNotFoundError(f"training defaults not found ({DEFAULTS})") from None


def merge(base: dict, over: dict, path: str = "") -> dict:
    """Recursive merge; unknown keys are an error (they are typos more often than not)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        where = f"{path}{k}"
        if k not in out:
            raise KeyError(f"unknown config key {where!r}")
        if isinstance(out[k], dict) and k != "options":
            if not isinstance(v, dict):
                raise TypeError(f"config key {where!r} must be a mapping")
            out[k] = merge(out[k], v, where + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(s: str) -> tuple[list[str], Any]:
    """'optim.lr=3e-4' -> (['optim', 'lr'], 0.0003); the value is parsed as YAML."""
    if "=" not in s:
        raise ValueError(f"override {s!r} must look like key.sub=value")
    key, val = s.split("=", 1)
    parsed = yaml.safe_load(val)
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip().split("."), parsed


def load_config(files: list[str | Path] = (), overrides: list[str] = ()) -> dict:
    """Defaults, then each YAML file in order, then the overrides."""
    cfg = yaml.safe_load(_installed_defaults().read_text())
    for f in files:
        cfg = merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    for o in overrides:
        keys, val = parse_override(o)
        nested: dict = val
        for k in reversed(keys):
            nested = {k: nested}
        cfg = merge(cfg, nested)
    return cfg


def get(cfg: dict, dotted: str) -> Any:
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


#: Keys that may differ between a run and its resumption.
RESUME_FREE = {"run.workers", "run.log_every", "run.device", "optim.epochs"}


def resume_mismatches(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (ignoring :data:`RESUME_FREE`)."""
    out = []
    for k in sorted(set(old) | set(new)):
        key = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and k != "options":
            out += resume_mismatches(a, b, key + ".")
        elif a != b and key not in RESUME_FREE:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
