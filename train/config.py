"""The training configuration: typed dataclasses, layered YAML files and ``--set`` overrides.

    cfg = load_config(["config/train_cpu.yaml"], ["optim.lr=3e-4", "mtl.options={alpha: 1.5}"])
    cfg.optim.lr, cfg.model.arch, cfg.data.pairs.max_distance_m

The defaults are the dataclass defaults below; ``config/train.yaml`` lists them with comments
(a test keeps the two equal). ``load_config`` applies YAML files in order, then ``--set``
overrides (``section.key=value``, the value read as YAML), and builds the typed config: an
unknown key, or a value of the wrong type, is an error that names the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reloc_ros.core.model import ModelConfig
from reloc_train.augment import AugmentConfig
from reloc_train.pairs import PairConfig

__all__ = ["DataConfig", "ModelSection", "MTLConfig", "RetrievalConfig", "OptimConfig", "RunConfig", "EvalConfig", "TrainConfig",
           "ConfigError", "load_config", "parse_override", "resume_mismatches", "RESUME_FREE"]


class ConfigError(ValueError):
    """A configuration key that does not exist, or a value of the wrong type (names the key)."""


@dataclass
class DataConfig:
    """Attributes:
        root: a 7-Scenes scene folder or a root holding several scenes.
        scenes: names of scenes under ``root`` (None: all).
        train_split, val_split: 'train', 'test', 'all', 'fit' (training minus the
            held-out calibration sequence) or 'calib' (that sequence).
        cache_limit_mb: keep the resized images in memory below this size.
        cache_features: with ``model.freeze_stages`` > 0, compute the frozen stages' output
            once per frame and train on it (the frozen stages then cost nothing per step).
        pairs: which frames make training pairs.
        val_root: a root of validation scenes, apart from the training ones (their
            ``train_split`` frames are the map, their ``val_split`` frames the queries);
            None: validate on the ``val_split`` frames of the training scenes.
        val_scenes: names of scenes under ``val_root`` (None: all).
        augment: appearance augmentation of the training inputs
            (:class:`reloc_train.augment.AugmentConfig`; off by default).
    """

    root: str | None = None
    scenes: list[str] | None = None
    train_split: str = "train"
    val_split: str = "test"
    val_root: str | None = None
    val_scenes: list[str] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_limit_mb: float = 4096.0
    cache_features: bool = True
    pairs: PairConfig = field(default_factory=PairConfig)


@dataclass
class ModelSection:
    """Attributes:
        arch: encoder (see ``reloc_ros.core.model.BACKBONES``).
        input_size: (height, width).
        head_hidden: hidden width of each head.
        dropout: before each head's output layer.
        pretrained: 'imagenet' (see ``reloc_train.pretrained``), a path to a .pth, or 'none'.
        freeze_stages: the first encoder stages that do not train (0: a full fine-tune);
            the stages after them are the trainable shared part that the MTL methods balance.
        descriptor_dim: learned projection of the retrieval descriptor (0: plain GeM).
        pose_grid, pose_channels: the heads' feature as a (rows, cols) grid of pose_channels
            (None: the global average); see ``reloc_ros.core.model.ModelConfig``.
        tasks: "t", "q" and optionally "r" (retrieval, trained with the view-overlap loss).
        pose_head: "concat" or "correlation" (needs pose_grid); see ``ModelConfig``.
        init: a model file (``model.pt``) whose weights, all of them, start the run instead
            of ``pretrained``: fine-tuning, e.g. the shipped generic model on one scene. Its
            network settings must equal this section's (the run stops naming those that differ).
    """

    arch: str = "resnet34"
    input_size: tuple[int, int] = (256, 341)
    head_hidden: int = 512
    dropout: float = 0.0
    pretrained: str = "imagenet"
    freeze_stages: int = 0
    descriptor_dim: int = 0
    pose_grid: tuple[int, int] | None = None
    pose_channels: int = 64
    tasks: list[str] = field(default_factory=lambda: ["t", "q"])
    pose_head: str = "concat"
    init: str | None = None

    def model_config(self):
        """The network's :class:`~reloc_ros.core.model.ModelConfig` (what the model file keeps)."""
        return ModelConfig(arch=self.arch, input_size=tuple(self.input_size), head_hidden=self.head_hidden,
                           dropout=self.dropout, descriptor_dim=self.descriptor_dim, pose_grid=self.pose_grid,
                           pose_channels=self.pose_channels, tasks=tuple(self.tasks), pose_head=self.pose_head)


@dataclass
class MTLConfig:
    """Attributes:
        method: the MTL weighting (``reloc_train.mtl.METHODS``).
        options: its keyword options, e.g. ``{alpha: 1.5}`` for gradnorm, ``{lr_scale: 10}``.
    """

    method: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetrievalConfig:
    """The retrieval task (``model.tasks`` holds "r"): labels from the view overlap of frames.

    Attributes:
        positive: frames that overlap at least this much, and are within ``positive_m`` and
            ``positive_deg`` of each other (the limits of the recall), are positives ...
        negative: ... at most this much, or beyond twice those limits, negatives (in
            between: ignored).
        max_distance_m: overlap is computed for camera centres this close (farther: 0).
        hard_negatives: add, per pair, a hard negative mined from the map at each epoch's
            start: a frame with a similar descriptor that does not overlap.
    """

    positive: float = 0.5
    negative: float = 0.1
    positive_m: float = 0.5
    positive_deg: float = 30.0
    max_distance_m: float = 3.0
    hard_negatives: bool = True


@dataclass
class AuxConfig:
    """Auxiliary tasks of the second reference (``reloc_train.auxiliary``): a U-Net decoder on
    the shared encoder, trained with the pose tasks and balanced by the same MTL method. It
    never runs at inference; its weights stay in ``checkpoint.pt``.

    Attributes:
        tasks: [] (none), or any of "seg" (semantic segmentation, from the scenes' label
            images; frames without one are masked out) and "depth" (L1 on inverse depth).
            The MTL tasks are then ``model.tasks + aux.tasks``.
        levels: the encoder stages the decoder reads besides the last one (skips); they
            must be trainable (>= ``model.freeze_stages``). []: one per resolution among
            the trainable stages (``reloc_train.auxiliary.default_levels``).
        width: channels inside the decoder.
    """

    tasks: list[str] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    width: int = 32


@dataclass
class OptimConfig:
    """Attributes:
        epochs, batch_size: the schedule (pairs per step).
        lr: learning rate of the network.
        weight_decay: Adam weight decay of the network's parameters (never of the MTL
            method's own parameters, see ``Weighting.param_groups``).
        schedule: 'cosine' or 'constant'.
        method_lr: base learning rate of the MTL method's own parameters (times its lr_scale).
        grad_clip: clip the network's gradient norm to this (0: off).
    """

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1.0e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"
    method_lr: float = 1.0e-3
    grad_clip: float = 0.0


@dataclass
class RunConfig:
    """Attributes:
        out: the run folder.
        seed: seeds the weights, the pair draws and the data order.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        workers: DataLoader worker processes.
        max_steps_per_epoch: cap for quick runs (None: every pair).
        checkpoint_every_steps: also checkpoint within an epoch (0: only at epoch ends).
        log_every: TensorBoard scalars every this many steps.
    """

    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 2
    max_steps_per_epoch: int | None = None
    checkpoint_every_steps: int = 0
    log_every: int = 10


@dataclass
class EvalConfig:
    """Attributes:
        max_frames: validation queries per scene (None: all), evenly spaced: the same every epoch.
        criterion_t_m, criterion_r_deg: the validation criterion is the mean over the
            validation scenes of (top-1 median t / criterion_t_m + median r / criterion_r_deg);
            the model file is the epoch with the lowest.
        diverge_factor: stop when the criterion exceeds this many times its best (or a loss
            is not finite): the run diverged.
    """

    max_frames: int | None = 500
    criterion_t_m: float = 0.1
    criterion_r_deg: float = 5.0
    diverge_factor: float = 3.0


@dataclass
class TrainConfig:
    """One training run: the sections of ``config/train.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    mtl: MTLConfig = field(default_factory=MTLConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError(f"optim.schedule: unknown schedule {self.optim.schedule!r} (cosine | constant)")
        bad = [t for t in self.aux.tasks if t not in ("seg", "depth")]
        if bad or len(set(self.aux.tasks)) != len(self.aux.tasks):
            raise ConfigError(f"aux.tasks: {self.aux.tasks} (each of 'seg', 'depth' at most once)")
        if self.aux.tasks and self.aux.width < 1:
            raise ConfigError(f"aux.width must be >= 1, got {self.aux.width}")
        for key, v in (("optim.epochs", self.optim.epochs), ("optim.batch_size", self.optim.batch_size),
                       ("run.log_every", self.run.log_every)):
            if v < 1:
                raise ConfigError(f"{key} must be >= 1, got {v}")
        e = self.eval
        for key, v in (("eval.criterion_t_m", e.criterion_t_m), ("eval.criterion_r_deg", e.criterion_r_deg)):
            if not v > 0:
                raise ConfigError(f"{key} must be > 0, got {v}")
        if not e.diverge_factor > 1:
            raise ConfigError(f"eval.diverge_factor must be > 1, got {e.diverge_factor}")

    def as_dict(self) -> dict:
        """Plain YAML/JSON-able nested dict (tuples as lists)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "")


# --------------------------------------------------------------------------- typed building
def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _build(cls, d, path: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config key {path.rstrip('.') or '<root>'!r} must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config key {path + unknown[0]!r}" +
                          (f" (and {', '.join(path + k for k in unknown[1:])})" if len(unknown) > 1 else ""))
    kwargs = {k: _coerce(hints[k], v, path + k) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path.rstrip('.') or 'config'}: {e}") from None


def _coerce(tp, v, key: str):
    """``v`` as type ``tp`` (dataclass, Optional, list, tuple, dict, int, float, bool, str)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, v, key)
    if dataclasses.is_dataclass(tp):
        return v if isinstance(v, tp) else _build(tp, v, key + ".")
    if origin in (list, tuple):
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {v!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(v) != len(args):
                raise ConfigError(f"config key {key!r} needs {len(args)} values, got {v!r}")
            return tuple(_coerce(a, x, key) for a, x in zip(args, v))
        return origin(_coerce(args[0], x, key) for x in v) if args else origin(v)
    if origin is dict or tp is dict:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {v!r}")
        return copy.deepcopy(v)
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise ConfigError(f"config key {key!r} must be an integer, got {v!r}")
        return int(v)
    if tp is float:
        if isinstance(v, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {v!r}")
        return float(v)
    if tp is str:
        if isinstance(v, Path):
            return str(v)
        if not isinstance(v, str):
            raise ConfigError(f"config key {key!r} must be a string, got {v!r}")
        return v
    return v


# --------------------------------------------------------------------------- layering
def _merge(base: dict, over: dict, path: str = "") -> dict:
    """Recursive merge of a YAML mapping over a config dict; unknown keys are an error."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        where = f"{path}{k}"
        if k not in out:
            raise ConfigError(f"unknown config key {where!r}")
        if isinstance(out[k], dict) and where != "mtl.options":
            if not isinstance(v, dict):
                raise ConfigError(f"config key {where!r} must be a mapping")
            out[k] = _merge(out[k], v, where + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(s: str) -> tuple[list[str], Any]:
    """'optim.lr=3e-4' -> (['optim', 'lr'], 0.0003); the value is read as YAML."""
    if "=" not in s:
        raise ConfigError(f"override {s!r} must look like key.sub=value")
    key, val = s.split("=", 1)
    return key.strip().split("."), yaml.safe_load(val)


def load_config(files: list[str | Path] = (), overrides: list[str] = (),
                base: TrainConfig | None = None) -> TrainConfig:
    """The dataclass defaults (or ``base``), then each YAML file in order, then the overrides."""
    d = (base or TrainConfig()).as_dict()
    for f in files:
        d = _merge(d, yaml.safe_load(Path(f).read_text()) or {})
    for o in overrides:
        keys, val = parse_override(o)
        nested: Any = val
        for k in reversed(keys):
            nested = {k: nested}
        d = _merge(d, nested)
    return TrainConfig.from_dict(d)


#: Keys that may differ between a run and its resumption.
RESUME_FREE = {"run.workers", "run.log_every", "run.device", "optim.epochs"}


def resume_mismatches(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``as_dict()`` configs (ignoring
    :data:`RESUME_FREE`)."""
    out = []
    for k in sorted(set(old) | set(new)):
        key = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and key != "mtl.options":
            out += resume_mismatches(a, b, key + ".")
        elif a != b and key not in RESUME_FREE:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
