"""The Siamese relative-pose network and its self-describing model file.

Architecture::

    image_a ─┐                    ┌─ f_a ─┐
             ├─ encoder (shared) ─┤       ├─ Z = [f_a, f_b] ─┬─ head "t" ─> t ∈ R^3
    image_b ─┘   ResNet-18/34     └─ f_b ─┘                  └─ head "q" ─> q ∈ R^4, |q| = 1

* The encoder is a torchvision ResNet without its classifier. Its last feature map gives
  two global vectors per image: the average-pooled feature ``f`` (the heads' input) and an
  L2-normalised GeM-pooled descriptor (for retrieval).
* The heads take two *feature vectors*, not two images, so a query is encoded once and
  compared with cached database features.
* The prediction is the pose of frame b in frame a: ``relative_pose(T_a, T_b)`` in
  :mod:`reloc_ros.geometry` terms, with ``q`` w-first. So ``T_b = T_a @ make_pose(t, q)``.

A model file carries everything needed to rebuild the network (architecture, input size,
normalisation), plus what produced it (MTL method, data, training config, code version),
and a fingerprint of the weights. :func:`load_model` needs nothing else, not even the
training code. A corrupt or foreign file raises :class:`ModelFileError`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reloc_ros import __version__
from reloc_ros._torchvision import import_torchvision

log = logging.getLogger(__name__)

MODEL_FORMAT = "reloc_ros.model"
MODEL_FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: feature width of the last stage of each supported backbone
ARCHS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
#: output size of each task head
TASK_DIMS = {"t": 3, "q": 4}


class ModelFileError(RuntimeError):
    """A model file is missing, corrupt, foreign or inconsistent. The message names it."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass
class ModelConfig:
    """Everything that defines the network's shape and its input.

    Attributes:
        arch: backbone name, one of :data:`ARCHS` (resnet34 as in the paper; resnet18 for CPU).
        input_size: (height, width) that images are resized to.
        mean, std: per-channel normalisation of RGB values in [0, 1].
        head_hidden: width of the hidden layer of each head (0: a single linear layer).
        dropout: dropout before each head's output layer during training.
        gem_p: exponent of the GeM pooling of the retrieval descriptor.
        tasks: the task heads, in loss order ("t" translation, "q" rotation).
    """

    arch: str = "resnet34"
    input_size: tuple[int, int] = (256, 341)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    head_hidden: int = 512
    dropout: float = 0.0
    gem_p: float = 3.0
    tasks: tuple[str, ...] = ("t", "q")

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.tasks = tuple(self.tasks)
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) >= 32, got {self.input_size}")
        unknown = [t for t in self.tasks if t not in TASK_DIMS]
        if unknown:
            raise ValueError(f"unknown task heads {unknown}; known: {sorted(TASK_DIMS)}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"unknown model config keys {sorted(extra)}")
        return cls(**d)

    @property
    def feature_dim(self) -> int:
        return ARCHS[self.arch]


class Encoder(nn.Module):
    """Shared ResNet trunk. ``forward(x)`` returns (pooled features f, retrieval descriptor).

    Args:
        arch: torchvision ResNet name.
        gem_p: GeM exponent for the descriptor.
    """

    def __init__(self, arch: str, gem_p: float = 3.0):
        super().__init__()
        tv = import_torchvision()
        net = getattr(tv.models, arch)(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.gem_p = float(gem_p)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.feature_map(x)
        f = fmap.mean(dim=(2, 3))
        gem = fmap.float().clamp(min=1e-6).pow(self.gem_p).mean(dim=(2, 3)).pow(1.0 / self.gem_p)
        return f, F.normalize(gem, dim=1)

    def last_shared_layer(self) -> list[nn.Parameter]:
        """Parameters of the encoder's last convolution (GradNorm's W)."""
        last_block = self.layer4[-1]
        conv = last_block.conv3 if hasattr(last_block, "conv3") else last_block.conv2
        return [conv.weight]


class Head(nn.Module):
    """MLP from Z = [f_a, f_b] (2C) to one task's output."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float):
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                     nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class RelPoseNet(nn.Module):
    """Siamese relative-pose regressor.

    Args:
        cfg: the :class:`ModelConfig`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.arch, cfg.gem_p)
        C = cfg.feature_dim
        self.heads = nn.ModuleDict(
            {t: Head(2 * C, TASK_DIMS[t], cfg.head_hidden, cfg.dropout) for t in cfg.tasks}
        )
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    # -- input
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB or float (B, 3, H, W) in [0, 1] -> normalised network input
        at ``cfg.input_size`` (antialiased bilinear resize when the size differs)."""
        if images.dtype == torch.uint8:
            images = _resize_uint8_nchw(images.permute(0, 3, 1, 2).float(), self.cfg.input_size).div_(255.0)
        elif tuple(images.shape[-2:]) != self.cfg.input_size:
            images = F.interpolate(images, size=self.cfg.input_size, mode="bilinear",
                                   align_corners=False, antialias=True)
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    # -- the two halves
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> (features f (B, C), descriptors (B, C))."""
        return self.encoder(x)

    def predict(self, f_a: torch.Tensor, f_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relative pose of b in a from two feature batches: {'t': (B, 3), 'q': (B, 4)}."""
        return self.heads_from_z(torch.cat([f_a, f_b], dim=1))

    def heads_from_z(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(z)
            if name == "q":
                y = F.normalize(y.float(), dim=1)
            out[name] = y
        return out

    def forward_pair(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Training forward: one encoder pass over both images (BatchNorm sees the pair
        batch once). Returns (predictions, Z) where Z = [f_a, f_b] is the shared
        representation that the Z-level MTL methods differentiate against."""
        f, _ = self.encoder(torch.cat([x_a, x_b], dim=0))
        f_a, f_b = f.chunk(2, dim=0)
        z = torch.cat([f_a, f_b], dim=1)
        return self.heads_from_z(z), z

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_pair(x_a, x_b)[0]

    # -- parameter groups for MTL
    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def _resize_uint8_nchw(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of float-valued 0..255 images, rounded back to integer
    levels: the one resize of the project (training cache, database, queries)."""
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    y = F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255)


def resize_rgb(image, size_hw: tuple[int, int]):
    """Resize a uint8 (H, W, 3) RGB numpy image to (height, width) exactly as
    :meth:`RelPoseNet.preprocess` does, so that images cached at the input size (training,
    database) and images resized on the fly (queries) give the same network input."""
    if tuple(image.shape[:2]) == tuple(size_hw):
        return image
    x = torch.tensor(image).permute(2, 0, 1).unsqueeze(0).float()
    return _resize_uint8_nchw(x, size_hw)[0].permute(1, 2, 0).to(torch.uint8).numpy()


# --------------------------------------------------------------------------- initialisation
def load_imagenet_weights(model: RelPoseNet, source: str | Path | None) -> str:
    """Initialise the encoder from ImageNet weights when available; returns what was used.

    Args:
        model: the network.
        source: a local ``.pth`` state dict of the torchvision ResNet, or ``"imagenet"`` to
            look in the torch hub cache (``$TORCH_HOME/hub/checkpoints/<arch>-*.pth``), or
            None for random initialisation. Nothing is downloaded.
    """
    if source is None or source == "" or source == "none":
        log.warning("encoder %s initialised at random (no ImageNet weights given)", model.cfg.arch)
        return "random"
    path = Path(source) if source != "imagenet" else None
    if path is None:
        ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
        found = sorted(ckpt_dir.glob(f"{model.cfg.arch}-*.pth"))
        if not found:
            log.warning("no %s ImageNet weights in %s; encoder initialised at random",
                        model.cfg.arch, ckpt_dir)
            return "random"
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet weights file does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    enc = model.encoder
    mapped = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        k2 = k
        for a, b in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
            if k.startswith(a):
                k2 = b + k[len(a):]
        mapped[k2] = v
    missing, unexpected = enc.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ModelFileError(path, f"not a torchvision {model.cfg.arch} state dict "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("encoder initialised from ImageNet weights %s", path)
    return str(path)


# --------------------------------------------------------------------------- model files
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def state_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes (order-independent)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_save(obj: Any, path: Path | str) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(path: Path | str, model: RelPoseNet, meta: dict | None = None) -> str:
    """Write a self-describing model file; returns its fingerprint.

    Args:
        path: destination (written atomically).
        model: the trained network.
        meta: provenance: MTL method, training data, training config, metrics, ...
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    fp = state_fingerprint(state)
    cfg = asdict(model.cfg)
    cfg["input_size"] = list(cfg["input_size"])
    cfg["mean"], cfg["std"], cfg["tasks"] = list(cfg["mean"]), list(cfg["std"]), list(cfg["tasks"])
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": cfg,
        "meta": {"code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 **(meta or {})},
        "fingerprint": fp,
        "state_dict": state,
    }
    atomic_save(payload, path)
    return fp


@dataclass
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    config: ModelConfig
    meta: dict = field(default_factory=dict)
    fingerprint: str = ""


def read_model_file(path: Path | str) -> dict:
    """Load and check a model file's container; raises :class:`ModelFileError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "model file does not exist")
    try:
        with open(path, "rb") as f:
            data = f.read()
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors of all kinds: the file is not a torch file
        raise ModelFileError(path, f"not a readable model file (corrupt or truncated?): {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(path, f"not a reloc_ros model file (format {fmt!r}, expected {MODEL_FORMAT!r})")
    if payload.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(path, f"model format version {payload.get('format_version')} is not "
                                   f"supported (this code reads version {MODEL_FORMAT_VERSION})")
    for key in ("config", "state_dict", "fingerprint"):
        if key not in payload:
            raise ModelFileError(path, f"model file lacks its {key!r} entry")
    return payload


def load_model(path: Path | str, device: str | torch.device = "cpu") -> tuple[RelPoseNet, ModelInfo]:
    """Rebuild the network from a model file alone; returns (model in eval mode, info).

    Checks the format, rebuilds the architecture from the stored config, verifies the
    weights' fingerprint and that they fit the architecture exactly.
    """
    path = Path(path)
    payload = read_model_file(path)
    try:
        cfg = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(path, f"invalid model config: {e}") from None
    state = payload["state_dict"]
    fp = state_fingerprint(state)
    if fp != payload["fingerprint"]:
        raise ModelFileError(path, "weights do not match the file's fingerprint (file corrupted or edited)")
    model = RelPoseNet(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the {cfg.arch} architecture: {str(e)[:300]}") from None
    model.to(device).eval()
    return model, ModelInfo(path=path, config=cfg, meta=payload.get("meta", {}), fingerprint=fp)
