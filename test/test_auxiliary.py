"""The auxiliary segmentation and depth heads (reloc_train.auxiliary): the decoder's shape,
the losses against hand-computed values, the masking of frames without labels or depth, and
a few training steps on the tiny scene's real label and depth images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloc_ros.core.model import ModelConfig, RelPoseNet
from reloc_train.auxiliary import (IGNORE, AuxDecoder, depth_errors, depth_loss, inverse_depth_targets, miou,
                                   segmentation_loss, stage_features)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=32))


def test_decoder_reads_trainable_stages_and_outputs_at_the_finest(net):
    levels = (2, 3)
    dec = AuxDecoder.for_model(net, levels, num_classes=20)
    x = torch.randn(2, 3, 48, 64)
    z, feats = stage_features(net, x, 0, levels)
    assert set(feats) == set(levels)
    seg, inv = dec(z, feats)
    h, w = feats[2].shape[-2:]
    assert seg.shape == (2, 20, h, w) and inv.shape == (2, 1, h, w) and bool((inv > 0).all())
    # entering at a later stage gives the same features (the cached-stage path of training)
    x1 = net.encoder.feature_map(x, 0, 2)
    z1, f1 = stage_features(net, x1, 2, levels)
    assert torch.allclose(z1, z) and torch.allclose(f1[3], feats[3])
    with pytest.raises(ValueError, match="before the first trainable stage 3"):
        stage_features(net, x, 3, levels)
    assert AuxDecoder(8, {1: 4}, 0, depth=True).seg is None
    with pytest.raises(ValueError):
        AuxDecoder(8, {1: 4}, 0, depth=False)


def test_segmentation_loss_is_cross_entropy_over_labelled_frames_only():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 2, 3, requires_grad=True)
    labels = torch.tensor([[[0, 1, 2], [3, IGNORE, 1]], [[1, 1, 1], [1, 1, 1]], [[2, 0, 0], [0, 3, 3]]],
                          dtype=torch.uint8)
    has = torch.tensor([True, False, True])
    loss = segmentation_loss(logits, labels, has)
    # the oracle: -log softmax at the true class, mean over the labelled pixels of frames 0 and 2
    lp = torch.log_softmax(logits.detach().double(), dim=1).numpy()
    terms = [-lp[b, int(labels[b, i, j]), i, j] for b in (0, 2) for i in range(2) for j in range(3)
             if int(labels[b, i, j]) != IGNORE]
    assert len(terms) == 11 and loss.item() == pytest.approx(float(np.mean(terms)), rel=1e-6)
    loss.backward()
    assert float(logits.grad[1].abs().sum()) == 0.0  # the unlabelled frame gets no gradient
    assert float(logits.grad[0].abs().sum()) > 0
    none = segmentation_loss(logits, labels, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_depth_targets_loss_and_errors():
    raw = torch.tensor([[[0, 1000], [2000, 65535]]], dtype=torch.int32)  # 7-Scenes millimetres
    inv_t = inverse_depth_targets(raw)
    assert torch.isnan(inv_t[0, 0, 0]) and torch.isnan(inv_t[0, 1, 1])
    assert inv_t[0, 0, 1] == pytest.approx(1.0) and inv_t[0, 1, 0] == pytest.approx(0.5)
    metres = torch.tensor([[[float("nan"), 1.0], [2.0, -1.0]]])
    assert torch.equal(torch.isnan(inverse_depth_targets(metres)), torch.isnan(inv_t))
    pred = torch.tensor([[[[9.0, 0.8], [0.5, 9.0]]]], requires_grad=True)  # 1/m
    loss = depth_loss(pred, raw)
    assert loss.item() == pytest.approx((0.2 + 0.0) / 2)  # only the two valid pixels
    loss.backward()
    assert pred.grad[0, 0, 0, 0] == 0 and pred.grad[0, 0, 1, 1] == 0
    e = depth_errors(pred.detach(), raw)
    assert e["abs_rel"] == pytest.approx((0.25 / 1.0 + 0.0) / 2)  # 1/0.8 = 1.25 m against 1 m
    assert e["median_abs_m"] == pytest.approx(0.125)  # the median of 0.25 and 0
    assert depth_loss(pred, torch.zeros_like(raw)).item() == 0.0


def test_miou():
    t = torch.tensor([[0, 0, 1, 1, IGNORE]])
    assert miou(t, t, 3) == 1.0
    assert miou(torch.tensor([[1, 1, 0, 0, 2]]), t, 3) == 0.0
    # class 0: 1 shared of 2; class 1: 2 shared of 3
    assert miou(torch.tensor([[0, 1, 1, 1, 0]]), t, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_a_few_steps_on_real_labels_and_depth_lower_both_losses(tiny_scene):
    """The tiny scene's label and depth images through a partly frozen encoder: both losses
    fall, and the gradient reaches the trainable encoder stages the decoder reads (the
    shared part), never the frozen ones."""
    from reloc_ros.data.sevenscenes import Scene, read_depth_raw
    from reloc_train.dataset import load_resized

    torch.manual_seed(0)
    net = RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=32))
    net.freeze_stages(2)
    sc = Scene(tiny_scene)
    frames = sc.frames("train")[::8][:4]
    mean, std = torch.tensor(net.cfg.mean)[:, None, None], torch.tensor(net.cfg.std)[:, None, None]
    x = torch.stack([(torch.from_numpy(load_resized(f.color_path, (48, 64))).permute(2, 0, 1).float() / 255 - mean)
                     / std for f in frames])
    labels = torch.stack([torch.from_numpy(sc.labels(f).copy()) for f in frames])
    depth = torch.stack([torch.from_numpy(read_depth_raw(f.depth_path).astype(np.int32)) for f in frames])
    has = torch.ones(len(frames), dtype=torch.bool)
    dec = AuxDecoder.for_model(net, (2, 3), num_classes=len(sc.classes))
    x2 = net.encoder.feature_map(x, 0, 2).detach()  # the frozen stages, cached as in training
    params = [p for p in net.encoder.parameters() if p.requires_grad] + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    first = None
    net.train()
    for step in range(40):
        z, feats = stage_features(net, x2, 2, dec.levels)
        seg, inv = dec(z, feats)
        ls, ld = segmentation_loss(seg, labels, has), depth_loss(inv, depth)
        opt.zero_grad()
        (ls + ld).backward()
        if step == 0:
            first = (ls.item(), ld.item())
            stages = net.encoder.stages()
            assert all(p.grad is None for m in stages[0] + stages[1] for p in m.parameters())
            assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for m in stages[2] for p in m.parameters())
        opt.step()
    assert ls.item() < 0.5 * first[0] and ld.item() < 0.5 * first[1], (first, ls.item(), ld.item())
    with torch.no_grad():
        net.eval()
        dec.eval()
        z, feats = stage_features(net, x2, 2, dec.levels)
        seg, inv = dec(z, feats)
    lab_small = torch.nn.functional.interpolate(labels[:, None].float(), size=seg.shape[-2:], mode="nearest")[:, 0]
    assert miou(seg.argmax(1), lab_small.long(), len(sc.classes)) > 0.2
    assert depth_errors(inv, depth)["abs_rel"] < 0.5
