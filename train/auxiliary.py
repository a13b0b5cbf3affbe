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
auxiliary gradients could not change the pose features.

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

__all__ = ["IGNORE", "AUX_TASKS", "stage_features", "check_levels", "default_levels", "resize_nearest",
           "AuxTargets", "aux_losses", "evaluate_aux", "AuxDecoder", "segmentation_loss", "depth_loss",
           "inverse_depth_targets", "miou", "depth_errors"]

#: Label id that no loss or metric reads (pixels outside the label image, resized borders).
IGNORE = 255
#: The auxiliary tasks, in MTL task order after t, q (and r).
AUX_TASKS = ("seg", "depth")


def stage_features(model, x: torch.Tensor, start: int, levels: tuple[int, ...]
                   ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One encoder pass from stage ``start`` (``x``: normalised images if 0, else the output
    of stage ``start - 1``): the last feature map Z and the outputs of the stages ``levels``."""
    check_levels(levels, start, model.encoder.num_stages)
    return model.encoder.feature_maps(x, start, tuple(levels))


def check_levels(levels: tuple[int, ...], start: int, num_stages: int) -> None:
    """Refuse decoder levels that are not trainable encoder stages before the last (the last
    stage's output, Z, is always read)."""
    bad = [lv for lv in levels if lv < start]
    if bad:
        raise ValueError(f"levels {bad} are before the first trainable stage {start}: the decoder must read "
                         "stages the pose tasks train")
    bad = [lv for lv in levels if lv >= num_stages - 1]
    if bad:
        raise ValueError(f"levels {bad}: the skips must be stages before the last one ({num_stages - 1}), "
                         "whose output Z the decoder always reads")


def default_levels(model, start: int, input_size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The decoder's skips when the config names none: for every resolution among the
    trainable stages ``start`` .. last-1, the last stage at that resolution (U-Net style:
    one skip per scale, the deepest feature of it). Empty when every trainable stage is at
    the last stage's resolution."""
    shapes = model.encoder.stage_shapes(input_size or model.cfg.input_size)
    last_size = shapes[-1][1:]
    by_size: dict[tuple, int] = {}
    for lv in range(start, len(shapes) - 1):
        if shapes[lv][1:] != last_size:
            by_size[shapes[lv][1:]] = lv
    return tuple(sorted(by_size.values()))


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
        #: (h, w) of the outputs for the model's input size (set by :meth:`for_model`)
        self.output_size: tuple[int, int] | None = None

    @classmethod
    def for_model(cls, model, levels: tuple[int, ...], num_classes: int, depth: bool = True, width: int = 32,
                  input_size: tuple[int, int] | None = None) -> "AuxDecoder":
        """A decoder for ``model``'s encoder, its channel counts and output size from a dry run."""
        shapes = model.encoder.stage_shapes(input_size or model.cfg.input_size)
        check_levels(tuple(levels), 0, len(shapes))
        dec = cls(shapes[-1][0], {lv: shapes[lv][0] for lv in levels}, num_classes, depth, width)
        dec.output_size = shapes[min(levels)][1:] if levels else shapes[-1][1:]
        return dec

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


# --------------------------------------------------------------------------- training targets
def resize_nearest(image_HW: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize sampled at pixel centres (no new values: label ids and
    invalid depth stay what they are)."""
    H, W = image_HW.shape[:2]
    h, w = size_hw
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return image_HW[rows[:, None], cols[None, :]]


class AuxTargets:
    """The auxiliary targets of every frame of a FrameSet at the decoder's output size,
    read once: label ids (uint8, :data:`IGNORE` where a frame has no label image), whether
    it has one, and depth in metres (float16, NaN where invalid or missing).

    Args:
        fs: the frames (:class:`reloc_train.dataset.FrameSet`).
        size_hw: the decoder's output size.
        seg, depth: which targets to read.
    """

    def __init__(self, fs, size_hw: tuple[int, int], seg: bool = True, depth: bool = True):
        h, w = self.size = tuple(int(v) for v in size_hw)
        n = len(fs)
        self.labels = torch.full((n, h, w), IGNORE, dtype=torch.uint8)
        self.has_label = torch.zeros(n, dtype=torch.bool)
        self.depth = torch.full((n, h, w), float("nan"), dtype=torch.float16)
        self.has_depth = torch.zeros(n, dtype=torch.bool)
        self.num_classes = 0
        for i, (k, f) in enumerate(zip(fs.scene_index, fs.frames)):
            scene = fs.scenes[k]
            if seg:
                lab = scene.labels(f)
                if lab is not None:
                    self.labels[i] = torch.from_numpy(resize_nearest(lab, self.size))
                    self.has_label[i] = True
                    self.num_classes = max(self.num_classes, len(scene.classes or ()))
            if depth and f.depth_path is not None:
                d = scene.depth(f)
                self.depth[i] = torch.from_numpy(resize_nearest(d, self.size).astype(np.float16))
                self.has_depth[i] = True

    def __len__(self) -> int:
        return len(self.has_label)

    def batch(self, rows, device: torch.device) -> dict[str, torch.Tensor]:
        """``labels`` (M, h, w) uint8, ``has_label`` (M,), ``depth`` (M, h, w) float32 metres."""
        r = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return {"labels": self.labels[r].to(device), "has_label": self.has_label[r].to(device),
                "depth": self.depth[r].to(device, torch.float32)}


def aux_losses(tasks: tuple[str, ...], seg: torch.Tensor | None, inv: torch.Tensor | None,
               target: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The auxiliary losses, in ``tasks`` order ("seg", "depth"), of the decoder's outputs
    (segmentation logits, inverse depth); ``target``: :meth:`AuxTargets.batch` of the same
    M inputs."""
    out = []
    for t in tasks:
        if t == "seg":
            out.append(segmentation_loss(seg, target["labels"], target["has_label"]))
        elif t == "depth":
            out.append(depth_loss(inv, target["depth"]))
        else:
            raise ValueError(f"unknown auxiliary task {t!r}; known: {list(AUX_TASKS)}")
    return out


@torch.no_grad()
def evaluate_aux(model, decoder: AuxDecoder, store, targets: AuxTargets, rows: np.ndarray, device: torch.device,
                 batch: int = 32) -> dict[str, float]:
    """mIoU (over the frames with labels) and depth AbsRel / median absolute error (m) of the
    decoder on frames ``rows`` of a store (images or cached features, its ``start``)."""
    was_m, was_d = model.training, decoder.training
    model.eval()
    decoder.eval()
    preds, labs, invs, deps = [], [], [], []
    for s in range(0, len(rows), batch):
        r = rows[s:s + batch]
        x = store.batch(r, device)
        x = model.preprocess(x) if store.start == 0 else x
        z, feats = stage_features(model, x, store.start, decoder.levels)
        seg, inv = decoder(z, feats)
        tgt = targets.batch(r, device)
        if seg is not None and bool(tgt["has_label"].any()):
            keep = tgt["has_label"]
            preds.append(seg[keep].argmax(1).cpu())
            labs.append(tgt["labels"][keep].cpu())
        if inv is not None:
            invs.append(inv.cpu())
            deps.append(tgt["depth"].cpu())
    model.train(was_m)
    decoder.train(was_d)
    out = {}
    if decoder.num_classes:
        out["miou"] = miou(torch.cat(preds), torch.cat(labs), decoder.num_classes) if preds else float("nan")
    if invs:
        out.update(depth_errors(torch.cat(invs), torch.cat(deps)))
    return out
