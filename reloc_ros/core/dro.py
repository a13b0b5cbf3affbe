r"""DRO: a recurrent optimizer that refines the query's pose against the database depth.

After Gu, Zhou, Wang, Hou, Zhu, Yang and Tan, "DRO: Deep Recurrent Optimizer for Video to
Depth" (RA-L 2023, arXiv 2103.13201): instead of Gauss–Newton steps on a feature-metric cost
(:class:`reloc_ros.core.featuremetric.FeatureMetricLM`), a convolutional GRU reads the cost
and outputs the update directly. No gradient of the cost is taken and no cost volume is
built; stages of a few iterations run coarse to fine, and more iterations at inference buy
accuracy. Here the database depth is known, so the pose is the only unknown.

The cost that it reads, per retrieved database frame m and per pixel p of that frame's
stored grid (:class:`reloc_ros.core.featuremetric.DenseSet`, the same points as LM's):

.. math::  r_{mp} = \hat F_q\big(\pi(K_q\, T^{-1} T_m X_{mp})\big) - \hat f_{mp}, \qquad
           \hat F = A_l(F), \ \hat f = A_l(f)

where :math:`F` are the shared encoder's stage-l features (from the query's single encoder
pass) and :math:`A_l` is a small learned adaptation (two 1x1 convolutions, then L2
normalisation). The adaptation is pointwise, so the database keeps the encoder's own
features and the same file serves LM and DRO.

One iteration (``m`` frames are a batch of ``m`` maps of the grid's size):

1. *Input map*: the residual :math:`r` (D channels), its squared norm, the squared norms
   one pixel right, left, down and up of the projection less the centre's (4 channels: where
   the cost falls, sampled, not differentiated), the reference feature :math:`\hat f`, the
   point in the query camera (x/z, y/z, 1/z), its validity (depth, in front, inside the
   image) and the current pose relative to the frame (translation and :math:`R - I`,
   broadcast): ``2D + 21`` channels, encoded pointwise. (DRO's GRU reads the cost at the
   estimate only; with a frozen encoder and pointwise adaptation that alone gave the GRU no
   cue of the direction to move, and it did not learn: the four taps are this version's
   addition.)
2. *Separable ConvGRU* (1x5 then 5x1, as in RAFT and DRO) updates the hidden state, which
   starts from the reference features and carries over stages.
3. *Head* (``head='flow'``, the default): per pixel, a displacement of its projection and a
   weight; a weighted least-squares solve through the projection's Jacobian (geometry, not
   a gradient of the cost) turns them into the increment :math:`\delta = (v, \omega)`, and
   :math:`T \leftarrow T \exp(\hat\delta)` (a right perturbation: v and ω are in the query
   camera's axes). ``head='direct'`` is DRO's own: per-pixel translation and rotation
   vectors pooled by a softmax over the valid pixels of all m frames. On the benchmark it did
   not learn within 900 steps (the validation error rose), where the flow head did.

Example::

    dro = DRO(DROConfig())
    Fq = dro.adapt(level_maps_1Chw, li)                     # the query's adapted map of level li
    poses, cost = dro(T0_B44, [Fq_BDhw ...], [K_B33 ...], [xyz_BMhw3 ...], [f_BMDhw ...], T_db_BM44)
    T_B44 = poses[-1]                                        # every iteration's pose: poses[k]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reloc_ros.core.files import atomic_save, load_container, tensor_fingerprint
from reloc_ros.core.model.file import ModelFileError, ModelInfo, code_version

__all__ = ["DROConfig", "DRO", "Adapter", "SepConvGRU", "so3_exp", "apply_increment", "save_dro", "load_dro",
           "rotation_angle", "DRO_FORMAT"]

DRO_FORMAT, DRO_FORMAT_VERSION = "reloc_ros.dro", 1
#: Sample offsets (pixels) around each projection: the centre, then right, left, down, up.
_TAPS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


@dataclass(frozen=True)
class DROConfig:
    """The optimizer's architecture and its default schedule (each documented below it)."""

    levels: tuple[int, ...] = (3, 2)
    """encoder stages it reads, coarse to fine (the database's dense levels)."""
    in_channels: tuple[int, ...] = (40, 24)
    """channels of those stages (EfficientNet-Lite0: 40 and 24; ResNet-34: 128 and 64)."""
    dim: int = 16
    """channels of the adapted features."""
    hidden: int = 16
    """GRU hidden channels."""
    motion: int = 16
    """channels of the encoded input map (the GRU's input)."""
    kernel: int = 5
    """length of the GRU's separable kernels (1 x k, then k x 1)."""
    head: str = "flow"
    """'flow': per-pixel displacements and weights, solved for the increment through the
    projection's Jacobian (:class:`_FlowHead`); 'direct': translation and rotation vectors
    pooled over the pixels, as in DRO (:class:`_Head`)."""
    stages: tuple[int, ...] = (0, 1, 1)
    """the level (index into ``levels``) of each stage, coarse to fine."""
    iterations: int = 2
    """GRU iterations per stage. DRO's default schedule is 3 x 4; 3 x 2 here keeps the
    refinement near the encoder's time on 2 CPU cores (more iterations at inference:
    ``LocalizerConfig.refine_iterations``)."""
    top_m: int = 3
    """retrieved database frames read together."""
    t_scale: float = 0.1
    """metres per unit of the translation head's output (head 'direct')."""
    r_scale: float = 0.05
    """radians per unit of the rotation head's output (head 'direct')."""
    tau: float = 0.3
    """a pixel has a low residual when ``|r| < tau`` (the adapted features have unit norm)."""

    def __post_init__(self):
        if len(self.levels) != len(self.in_channels) or not self.levels:
            raise ValueError("DROConfig: one in_channels entry per level")
        if not self.stages or min(self.stages) < 0 or max(self.stages) >= len(self.levels):
            raise ValueError("DROConfig: stages must index levels")
        if self.iterations < 0 or self.dim < 1 or self.hidden < 1 or self.top_m < 1:
            raise ValueError("DROConfig: iterations >= 0, dim, hidden, top_m >= 1")
        if self.head not in ("flow", "direct"):
            raise ValueError(f"DROConfig: head must be 'flow' or 'direct' (got {self.head!r})")

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DROConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --------------------------------------------------------------------------- SE(3) helpers
def so3_exp(w_B3: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(B, 3, 3)`` of rotation vectors (Rodrigues; smooth at 0)."""
    th2 = (w_B3 ** 2).sum(-1, keepdim=True)[..., None]  # (B, 1, 1)
    th = torch.sqrt(th2 + 1e-12)
    small = th2 < 1e-8
    a = torch.where(small, 1 - th2 / 6, torch.sin(th) / th)
    b = torch.where(small, 0.5 - th2 / 24, (1 - torch.cos(th)) / (th2 + 1e-12))
    x, y, z = w_B3.unbind(-1)
    o = torch.zeros_like(x)
    W = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*w_B3.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w_B3.dtype, device=w_B3.device).expand_as(W)
    return eye + a * W + b * (W @ W)


def apply_increment(T_B44: torch.Tensor, v_B3: torch.Tensor, w_B3: torch.Tensor) -> torch.Tensor:
    """``T exp(δ)``: the pose moved by ``v`` (metres) and rotated by ``w`` (radians), both in
    its own camera axes."""
    D = torch.zeros_like(T_B44)
    D[:, :3, :3] = so3_exp(w_B3)
    D[:, :3, 3] = v_B3
    D[:, 3, 3] = 1
    return T_B44 @ D


# --------------------------------------------------------------------------- the network
class Adapter(nn.Module):
    """Pointwise adaptation of one encoder stage: 1x1 conv, ReLU, 1x1 conv, L2 norm."""

    def __init__(self, c_in: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, 2 * dim, 1), nn.ReLU(inplace=True), nn.Conv2d(2 * dim, dim, 1))

    def forward(self, F_BChw: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(F_BChw), dim=1)


class SepConvGRU(nn.Module):
    """A separable convolutional GRU: a 1xk GRU step, then a kx1 one (RAFT, DRO: k = 5)."""

    def __init__(self, hidden: int, inp: int, k: int = 5):
        super().__init__()
        c, p = hidden + inp, k // 2
        self.zr1, self.q1 = nn.Conv2d(c, 2 * hidden, (1, k), padding=(0, p)), nn.Conv2d(c, hidden, (1, k), padding=(0, p))
        self.zr2, self.q2 = nn.Conv2d(c, 2 * hidden, (k, 1), padding=(p, 0)), nn.Conv2d(c, hidden, (k, 1), padding=(p, 0))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for zr, q in ((self.zr1, self.q1), (self.zr2, self.q2)):
            z, r = torch.sigmoid(zr(torch.cat([h, x], 1))).chunk(2, 1)
            h = (1 - z) * h + z * torch.tanh(q(torch.cat([r * h, x], 1)))
        return h


class _Head(nn.Module):
    """Per pixel a 3-vector and a weight logit (two pointwise layers), pooled by a softmax
    over the valid pixels of all frames."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))
        nn.init.normal_(self.net[2].weight, std=1e-3)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, h_BMPH, valid_BMP):
        B = len(h_BMPH)
        out = self.net(h_BMPH)  # (B, M, P, 4)
        vec, logit = out[..., :3], out[..., 3].masked_fill(~valid_BMP, -1e4)
        w = torch.softmax(logit.reshape(B, -1), -1).reshape(valid_BMP.shape) * valid_BMP
        return (w[..., None] * vec).sum((1, 2)) / w.sum((1, 2))[:, None].clamp_min(1e-9)


class _FlowHead(nn.Module):
    r"""Per pixel a 2-D displacement of its projection (pixels of the level) and a weight in
    (0, 1); the increment :math:`\xi = (v, \omega)` that moves the projections so, in the
    least-squares sense:

    .. math::  \xi = \Big(\sum_i w_i J_i^\top J_i + \lambda I\Big)^{-1} \sum_i w_i J_i^\top \Delta u_i,
               \qquad J_i = \frac{\partial u}{\partial X_c}\,\big[-I \mid [X_c]_\times\big]

    :math:`J_i` is the projection's Jacobian with respect to the pose (geometry, not a
    gradient of the cost): the GRU proposes where each point should go, from the cost it
    reads, and the solve turns that into the se(3) increment."""

    def __init__(self, hidden: int, damping: float = 1e-2):
        super().__init__()
        self.damping = damping
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 3))
        nn.init.normal_(self.net[2].weight, std=1e-3)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, h_BMPH, valid_BMP, Xq_BMP3, K_B33):
        out = self.net(h_BMPH)
        du, w = out[..., :2], torch.sigmoid(out[..., 2]) * valid_BMP
        z = Xq_BMP3[..., 2].clamp_min(0.05)
        x, y = Xq_BMP3[..., 0], Xq_BMP3[..., 1]
        fx, fy = K_B33[:, 0, 0, None, None], K_B33[:, 1, 1, None, None]
        o = torch.zeros_like(z)
        dudX = torch.stack([fx / z, o, -fx * x / z ** 2, o, fy / z, -fy * y / z ** 2], -1).reshape(*z.shape, 2, 3)
        X = torch.stack([o, -Xq_BMP3[..., 2], y, Xq_BMP3[..., 2], o, -x, -y, x, o], -1).reshape(*z.shape, 3, 3)
        J = dudX @ torch.cat([-torch.eye(3, device=z.device).expand(*z.shape, 3, 3), X], -1)  # (B, M, P, 2, 6)
        B = len(J)
        J = J.reshape(B, -1, 6)  # (B, 2 M P, 6)
        Jw = J * w.reshape(B, -1, 1).repeat_interleave(2, 1)
        H = Jw.transpose(1, 2) @ J
        g = (Jw.transpose(1, 2) @ du.reshape(B, -1, 1))[..., 0]
        lam = self.damping * (H.diagonal(dim1=1, dim2=2).mean(1) + 1e-6)
        xi = torch.linalg.solve(H + lam[:, None, None] * torch.eye(6, device=H.device), g[..., None])[..., 0]
        return xi.reshape(B, 6)


class DRO(nn.Module):
    """The recurrent pose optimizer (module docstring). Parameters: ``adapters`` (one per
    level), ``encoder`` (the input map's pointwise layers), ``gru``, ``init`` (hidden state from the
    reference features), and the head: ``head_f`` (flow, shared by the translation and
    rotation tasks) or the task-specific ``head_t`` and ``head_r`` (direct)."""

    def __init__(self, cfg: DROConfig = DROConfig()):
        super().__init__()
        self.cfg = cfg
        d, h = cfg.dim, cfg.hidden
        self.adapters = nn.ModuleList([Adapter(c, d) for c in cfg.in_channels])
        # pointwise layers run as matrix products on (..., P, C): at these sizes a 1x1
        # convolution costs several times more on a CPU
        self.encoder = nn.Sequential(nn.Linear(2 * d + 21, cfg.motion), nn.ReLU(inplace=True))
        self.init = nn.Linear(d, h)
        self.gru = SepConvGRU(h, cfg.motion, cfg.kernel)
        if cfg.head == "flow":
            self.head_f = _FlowHead(h)
        else:
            self.head_t, self.head_r = _Head(h), _Head(h)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that both of DRO's tasks (translation, rotation) train."""
        mods = (self.adapters, self.encoder, self.init, self.gru) + ((self.head_f,) if self.cfg.head == "flow" else ())
        return [p for m in mods for p in m.parameters()]

    def task_parameters(self) -> list[nn.Parameter]:
        """The translation and rotation heads (head 'direct'); the flow head serves both tasks."""
        if self.cfg.head == "flow":
            return []
        return [*self.head_t.parameters(), *self.head_r.parameters()]


    def adapt(self, F_BChw: torch.Tensor, level_index: int) -> torch.Tensor:
        """Adapted, unit-norm features ``(B, D, h, w)`` of level ``level_index``."""
        return self.adapters[level_index](F_BChw)

    def adapt_grid(self, f_BMhwC: torch.Tensor, level_index: int) -> torch.Tensor:
        """Adapted reference features ``(B, M, D, gh, gw)`` of stored grids ``(B, M, gh, gw, C)``."""
        B, M, gh, gw, C = f_BMhwC.shape
        x = f_BMhwC.reshape(B * M, gh, gw, C).permute(0, 3, 1, 2)
        return self.adapters[level_index](x).reshape(B, M, -1, gh, gw)

    def residuals(self, T_B44, Fq_BDhw, K_B33, Xw_BMP3, f_BMPD, has_depth_BMP):
        """Residuals ``(B, M, P, D)`` at the projections, the cost one pixel right, left, down and
        up of them less the cost there ``(B, M, P, 4)``, validity ``(B, M, P)``, and the points
        in the query camera ``(B, M, P, 3)``."""
        B, M, P, _ = Xw_BMP3.shape
        R, t = T_B44[:, :3, :3], T_B44[:, :3, 3]
        Xq = (Xw_BMP3 - t[:, None, None]) @ R[:, None]  # R^T (X - t), row vectors
        z = Xq[..., 2]
        zs = z.clamp_min(1e-3)
        K = K_B33[:, None, None]
        u = K[..., 0, 0] * Xq[..., 0] / zs + K[..., 0, 2]
        v = K[..., 1, 1] * Xq[..., 1] / zs + K[..., 1, 2]
        h, w = Fq_BDhw.shape[-2:]
        valid = has_depth_BMP & (z > 0.05) & (u >= 0) & (v >= 0) & (u <= w - 1) & (v <= h - 1)
        grid = torch.stack([2 * u / (w - 1) - 1, 2 * v / (h - 1) - 1], -1).reshape(B, 1, M * P, 2)
        taps = _TAPS.to(grid) * torch.tensor([2 / (w - 1), 2 / (h - 1)], device=grid.device)
        grid = grid.reshape(B, M * P, 1, 2) + taps  # (B, M P, taps, 2)
        fq = F.grid_sample(Fq_BDhw, grid.clamp(-2, 2), align_corners=True, padding_mode="zeros")
        fq = fq.reshape(B, -1, M, P, len(_TAPS)).permute(0, 2, 3, 4, 1)  # (B, M, P, taps, D)
        r = (fq[..., 0, :] - f_BMPD) * valid[..., None]
        # the cost one pixel to each side of the projection, less the centre's
        around = (((fq[..., 1:, :] - f_BMPD[..., None, :]) ** 2).sum(-1) - (r ** 2).sum(-1, keepdim=True))
        return r, around * valid[..., None], valid, Xq

    def forward(self, T0_B44: torch.Tensor, query_levels: list[torch.Tensor], K_levels: list[torch.Tensor],
                xyz_levels: list[torch.Tensor], feat_levels: list[torch.Tensor], T_db_BM44: torch.Tensor,
                stages: tuple[int, ...] | None = None, iterations: int | None = None
                ) -> tuple[list[torch.Tensor], dict]:
        """Refine camera-to-world poses.

        Args:
            T0_B44: initial poses (camera-to-world).
            query_levels: per level, the queries' adapted maps ``(B, D, h, w)`` (:meth:`adapt`).
            K_levels: per level, the queries' intrinsics at that map's size ``(B, 3, 3)``.
            xyz_levels: per level, the reference grids' camera-frame points ``(B, M, gh, gw, 3)``
                (z = 0: no depth).
            feat_levels: per level, their adapted features ``(B, M, D, gh, gw)`` (:meth:`adapt_grid`).
            T_db_BM44: the reference frames' camera-to-world poses.
            stages, iterations: the schedule (default: the config's).

        Returns:
            ``(poses, info)``: the pose after every iteration (``poses[0]`` is ``T0``), and at
            the last pose ``cost`` ``(B,)`` (mean squared residual norm over valid pixels),
            ``low_share`` ``(B,)`` (share of valid pixels with ``|r| < tau``), ``valid`` ``(B,)``
            (valid pixels, finest stage's level).
        """
        cfg = self.cfg
        stages = cfg.stages if stages is None else stages
        iterations = cfg.iterations if iterations is None else iterations
        B, M = T_db_BM44.shape[:2]
        T = T0_B44
        poses = [T]
        h = None
        world = {}
        for li in sorted(set(stages)):
            X = xyz_levels[li]
            gh, gw = X.shape[2:4]
            Xw = X.reshape(B, M, -1, 3) @ T_db_BM44[:, :, :3, :3].transpose(-1, -2) + T_db_BM44[:, :, None, :3, 3]
            f = feat_levels[li].reshape(B, M, cfg.dim, -1).transpose(2, 3)  # (B, M, P, D)
            world[li] = (Xw, f, X.reshape(B, M, -1, 3)[..., 2] > 0, gh, gw)
        T_db_inv = torch.linalg.inv(T_db_BM44)
        for li in stages:
            Xw, f, has_depth, gh, gw = world[li]
            Fq, K = query_levels[li], K_levels[li]
            P = gh * gw
            if h is None or h.shape[-2:] != (gh, gw):
                h = torch.tanh(self.init(f)).reshape(B * M, gh, gw, -1).permute(0, 3, 1, 2)
            for _ in range(iterations):
                Tc = T.detach()
                r, around, valid, Xq = self.residuals(Tc, Fq, K, Xw, f, has_depth)
                rel = T_db_inv @ Tc[:, None]  # (B, M, 4, 4) query in the frame's camera
                zs = Xq[..., 2:3].clamp_min(0.05)
                geo = torch.cat([Xq[..., :2] / zs, 1 / zs], -1) * valid[..., None]  # (B, M, P, 3)
                pose = torch.cat([rel[..., :3, 3], (rel[..., :3, :3] - torch.eye(3, device=T.device)).flatten(-2)], -1)
                x = torch.cat([r, (r ** 2).sum(-1, keepdim=True), around, f, geo, valid[..., None].float(),
                               pose[:, :, None].expand(B, M, P, 12)], -1)  # (B, M, P, 2D + 21)
                x = self.encoder(x).reshape(B * M, gh, gw, -1).permute(0, 3, 1, 2)
                h = self.gru(h, x)
                hp = h.permute(0, 2, 3, 1).reshape(B, M, P, -1)
                if cfg.head == "flow":
                    xi = self.head_f(hp, valid, Xq, K)
                    v, w = xi[:, :3], xi[:, 3:]
                else:
                    v = self.head_t(hp, valid) * cfg.t_scale
                    w = self.head_r(hp, valid) * cfg.r_scale
                T = apply_increment(Tc, v, w)
                poses.append(T)
        with torch.no_grad():
            li = stages[-1]
            Xw, f, has_depth, _, _ = world[li]
            r, _, valid, _ = self.residuals(poses[-1].detach(), query_levels[li], K_levels[li], Xw, f, has_depth)
            rn2 = (r ** 2).sum(-1)
            n = valid.sum((1, 2)).clamp_min(1)
            info = {"cost": (rn2 * valid).sum((1, 2)) / n,
                    "low_share": ((rn2 < cfg.tau ** 2) & valid).sum((1, 2)) / n,
                    "valid": valid.sum((1, 2))}
        return poses, info


# --------------------------------------------------------------------------- the file
def save_dro(path: Path | str, dro: DRO, model_info: ModelInfo, meta: dict | None = None) -> str:
    """Write a DRO file (atomically) tied to the encoder whose features it was trained on."""
    state = {k: v.detach().cpu() for k, v in dro.state_dict().items()}
    fp = tensor_fingerprint(state)
    atomic_save({"format": DRO_FORMAT, "format_version": DRO_FORMAT_VERSION, "config": dro.cfg.as_dict(),
                 "model_fingerprint": model_info.fingerprint, "fingerprint": fp, "state_dict": state,
                 "meta": {"code_version": code_version(), **(meta or {})}}, path)
    return fp


def load_dro(path: Path | str, model_info: ModelInfo | None = None, device: str | torch.device = "cpu"
             ) -> tuple[DRO, dict]:
    """Rebuild a DRO from its file; checks the container, the weights' fingerprint and, given
    the model's info, that it was trained on that model's encoder. Raises
    :class:`reloc_ros.core.model.file.ModelFileError` naming the file."""
    path = Path(path)
    payload = load_container(path, ModelFileError, "DRO file", DRO_FORMAT, DRO_FORMAT_VERSION,
                             rebuild="python -m reloc_train.dro")
    for key in ("config", "state_dict", "fingerprint", "model_fingerprint"):
        if key not in payload:
            raise ModelFileError(path, f"DRO file lacks its {key!r} entry")
    if tensor_fingerprint(payload["state_dict"]) != payload["fingerprint"]:
        raise ModelFileError(path, "weights do not match the file's fingerprint (file corrupted or edited)")
    if model_info is not None and payload["model_fingerprint"] != model_info.fingerprint:
        raise ModelFileError(path, f"was trained on the features of another model (fingerprint "
                                   f"{payload['model_fingerprint'][:12]}, not {model_info.path}'s "
                                   f"{model_info.fingerprint[:12]}); retrain it (python -m reloc_train.dro)")
    try:
        dro = DRO(DROConfig.from_dict(payload["config"]))
        dro.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(path, f"DRO weights do not fit its config: {str(e)[:300]}") from None
    return dro.to(device).eval(), payload


def rotation_angle(R_B33: torch.Tensor) -> torch.Tensor:
    """Rotation angles (radians) of rotation matrices, smooth near 0 (atan2 form)."""
    s = torch.stack([R_B33[:, 2, 1] - R_B33[:, 1, 2], R_B33[:, 0, 2] - R_B33[:, 2, 0],
                     R_B33[:, 1, 0] - R_B33[:, 0, 1]], -1)
    c = (R_B33.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.atan2(torch.sqrt((s ** 2).sum(-1) / 4 + 1e-12), c)

