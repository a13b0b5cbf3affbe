"""Auxiliary tasks of the second reference (MapNet + segmentation): a U-Net-style decoder on
the shared encoder with a semantic-segmentation and a depth output. Training only: the
decoder never runs at inference, and its weights live in the training checkpoint, not in
the deployed ``model.pt``.

Architecture (the encoder stages ``levels``, fine to coarse, all trainable)::

    Z (last stage) ─ 1x1 ─┐
                          up ─ cat(1x1(stage l_k)) ─ 3x3 ─ ... ─ up ─ cat(1x1(stage l_1)) ─ 3x3 ─┬─ 1x1 ─> seg logits (C)
                                                                                                └─ 1x1 ─ softplus ─> inverse depth (1/m)

The outputs are at the resolution of the finest level read. The decoder reads only stages
that the pose tasks also train (``levels`` >= the first trainable stage): otherwise the
auxiliary gradients could not change the pose features (the issue's condition).

Losses (per task, one scalar, batch means over the frames that have the target):

* segmentation: cross-entropy over the labelled pixels of the frames that have a label
  image (:meth:`reloc_ros.data.sevenscenes.Scene.labels`); frames without one (real
  7-Scenes) are masked out, never faked;
* depth: L1 on inverse depth (1/m) over the valid pixels (7-Scenes' raw 0 and 65535, NaN
  masked), the reference's formulation for scale-free supervision.

Metrics: mIoU over the classes present, depth AbsRel and the median absolute error (m).

Example::

    dec = AuxDecoder.for_model(model, levels=(6, 7), num_classes=20)
    z, feats = stage_features(model, x, start=6, levels=dec.levels)
    seg, inv = dec(z, feats)
    L_seg = segmentation_loss(seg, labels_BHW, has_label_B)
    L_depth = depth_loss(inv, depth_BHW)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IGNORE", "AUX_TASKS", "stage_features", "AuxDecoder", "segmentation_loss", "depth_loss",
           "inverse_depth_targets", "miou", "depth_errors"]

#: Label id that no loss or metric reads (pixels outside the label image, resized borders).
IGNORE = 255
#: The auxiliary tasks, in MTL task order after t, q (and r).
AUX_TASKS = ("seg", "depth")


def stage_features(model, x: torch.Tensor, start: int, levels: tuple[int, ...]
                   ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One encoder pass from stage ``start`` (``x``: normalised images if 0, else the output
    of stage ``start - 1``): the last feature map Z and the outputs of the stages ``levels``."""
    bad = [lv for lv in levels if lv < start]
    if bad:
        raise ValueError(f"levels {bad} are before the first trainable stage {start}: the decoder must read "
                         "stages the pose tasks train")
    out = {}
    for i, mods in enumerate(model.encoder.stages()):
        if i < start:
            continue
        for m in mods:
            x = m(x)
        if i in levels:
            out[i] = x
    return x, out


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AuxDecoder(nn.Module):
    """U-Net decoder over encoder stages (see the module docstring).

    Args:
        z_channels: channels of the encoder's last feature map Z.
        skip_channels: ``{stage: channels}`` of the stages read, any order.
        num_classes: segmentation classes (0: no segmentation output).
        depth: a depth output.
        width: channels inside the decoder.
    """

    def __init__(self, z_channels: int, skip_channels: dict[int, int], num_classes: int, depth: bool = True,
                 width: int = 32):
        super().__init__()
        if num_classes < 0 or (num_classes == 0 and not depth):
            raise ValueError("the decoder needs a segmentation output (num_classes > 0), a depth output, or both")
        self.levels = tuple(sorted(skip_channels))
        self.num_classes, self.has_depth = int(num_classes), bool(depth)
        self.inp = nn.Conv2d(z_channels, width, 1)
        self.lateral = nn.ModuleDict({str(lv): nn.Conv2d(c, width, 1) for lv, c in skip_channels.items()})
        self.fuse = nn.ModuleDict({str(lv): _block(2 * width, width) for lv in skip_channels})
        self.seg = nn.Conv2d(width, num_classes, 1) if num_classes else None
        self.depth = nn.Conv2d(width, 1, 1) if depth else None

    @classmethod
    def for_model(cls, model, levels: tuple[int, ...], num_classes: int, depth: bool = True, width: int = 32,
                  input_size: tuple[int, int] | None = None) -> "AuxDecoder":
        """A decoder for ``model``'s encoder, its channel counts from a dry run."""
        h, w = input_size or model.cfg.input_size
        was = model.training
        model.eval()
        with torch.no_grad():
            z, feats = stage_features(model, torch.zeros(1, 3, h, w), 0, tuple(levels))
        model.train(was)
        return cls(z.shape[1], {lv: f.shape[1] for lv, f in feats.items()}, num_classes, depth, width)

    def forward(self, z: torch.Tensor, feats: dict[int, torch.Tensor]
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(segmentation logits (B, C, h, w) or None, inverse depth (B, 1, h, w) in 1/m or None)
        at the resolution of the finest stage read."""
        y = self.inp(z)
        for lv in reversed(self.levels):  # coarse to fine
            s = feats[lv]
            y = F.interpolate(y, size=s.shape[-2:], mode="bilinear", align_corners=False)
            y = self.fuse[str(lv)](torch.cat([y, self.lateral[str(lv)](s)], dim=1))
        seg = self.seg(y) if self.seg is not None else None
        inv = F.softplus(self.depth(y)) if self.depth is not None else None
        return seg, inv


def _resize_nearest(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) integer or float maps to ``size`` by nearest neighbour (pixel centres)."""
    return F.interpolate(t[:, None].float(), size=size, mode="nearest")[:, 0]


def segmentation_loss(logits_BCHW: torch.Tensor, labels_BHW: torch.Tensor, has_label_B: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled pixels of the frames with a label image.

    Args:
        logits_BCHW: decoder output.
        labels_BHW: class ids (any integer dtype; :data:`IGNORE` ignored) at any resolution;
            resized to the logits' by nearest neighbour.
        has_label_B: bool, the frames that have a label image; the others add nothing.
    Returns 0 (still in the graph) when no frame has labels.
    """
    keep = has_label_B.to(torch.bool)
    if not bool(keep.any()):
        return logits_BCHW.sum() * 0.0
    lab = _resize_nearest(labels_BHW[keep], logits_BCHW.shape[-2:]).long()
    lab = torch.where((lab >= 0) & (lab < logits_BCHW.shape[1]), lab, torch.full_like(lab, IGNORE))
    if not bool((lab != IGNORE).any()):
        return logits_BCHW.sum() * 0.0
    return F.cross_entropy(logits_BCHW[keep].float(), lab, ignore_index=IGNORE)


def inverse_depth_targets(depth_BHW: torch.Tensor) -> torch.Tensor:
    """Inverse depth (1/m) of a depth batch, NaN where there is no measurement. Input: metres
    (float, NaN or <= 0 invalid) or raw 7-Scenes millimetres (uint16 or int, 0 and 65535 invalid)."""
    if not torch.is_floating_point(depth_BHW):
        raw = depth_BHW.long()
        m = raw.double() / 1000.0
        m = torch.where((raw > 0) & (raw < 65535), m, torch.full_like(m, float("nan")))
    else:
        m = depth_BHW.double()
        m = torch.where(torch.isfinite(m) & (m > 0), m, torch.full_like(m, float("nan")))
    return (1.0 / m).float()


def depth_loss(inv_B1HW: torch.Tensor, depth_BHW: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true inverse depth over the valid pixels (targets resized to
    the prediction by nearest neighbour; a frame with no valid pixel adds nothing). 0 (still
    in the graph) when nothing is valid."""
    tgt = _resize_nearest(inverse_depth_targets(depth_BHW), inv_B1HW.shape[-2:])
    ok = torch.isfinite(tgt)
    if not bool(ok.any()):
        return inv_B1HW.sum() * 0.0
    return (inv_B1HW[:, 0].float()[ok] - tgt[ok]).abs().mean()


def miou(pred_BHW: torch.Tensor, labels_BHW: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union over the classes present in the labels or predictions
    (labels :data:`IGNORE` excluded)."""
    ok = labels_BHW != IGNORE
    p, t = pred_BHW[ok].long(), labels_BHW[ok].long()
    ious = []
    for c in range(num_classes):
        inter = int(((p == c) & (t == c)).sum())
        union = int(((p == c) | (t == c)).sum())
        if union:
            ious.append(inter / union)
    return float(sum(ious) / len(ious)) if ious else float("nan")


def depth_errors(inv_B1HW: torch.Tensor, depth_BHW: torch.Tensor) -> dict[str, float]:
    """AbsRel (mean |d̂ − d| / d) and the median absolute error (m) of the predicted depth
    1 / inverse depth, over the valid pixels."""
    tgt = _resize_nearest(inverse_depth_targets(depth_BHW), inv_B1HW.shape[-2:])
    ok = torch.isfinite(tgt)
    if not bool(ok.any()):
        return {"abs_rel": float("nan"), "median_abs_m": float("nan")}
    d_true = 1.0 / tgt[ok].double()
    d_pred = 1.0 / inv_B1HW[:, 0][ok].double().clamp_min(1e-6)
    err = (d_pred - d_true).abs()
    # torch.median takes the lower of the two middle values; the metric is the usual median
    return {"abs_rel": float((err / d_true).mean()), "median_abs_m": float(np.median(err.cpu().numpy()))}
