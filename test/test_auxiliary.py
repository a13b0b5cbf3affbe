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


# --------------------------------------------------------------------------- in the trainer
AUX_TINY = [
    "model.arch=resnet18", "model.input_size=[48,64]", "model.head_hidden=32", "model.pretrained=none",
    "model.freeze_stages=2", "optim.batch_size=4", "optim.lr=1e-3", "optim.schedule=constant", "run.workers=0",
    "run.log_every=1", "eval.max_frames=6", "data.pairs.max_distance_m=1.5", "data.pairs.max_angle_deg=45",
]


def _aux_trainer(scene, out, *extra):
    from reloc_train.config import load_config
    from reloc_train.train import Trainer

    torch.manual_seed(0)
    return Trainer(load_config([], AUX_TINY + [f"data.root={scene}", f"run.out={out}", *extra]))


def _first_batch(tr):
    tr.dataset.set_epoch(0, tr.mine_hard_negatives())
    return next(iter(torch.utils.data.DataLoader(tr.dataset, batch_size=4)))


def test_default_levels_one_per_trainable_resolution(net):
    from reloc_train.auxiliary import check_levels, default_levels

    # resnet18 at 48x64: stem and layer1 at 12x16, layer2 6x8, layer3 3x4, layer4 (Z) 2x2
    assert default_levels(net, 0) == (1, 2, 3)
    assert default_levels(net, 2) == (2, 3)
    assert default_levels(net, 4) == ()
    with pytest.raises(ValueError, match="before the first trainable stage 2"):
        check_levels((1, 3), 2, 5)
    with pytest.raises(ValueError, match="before the last one"):
        check_levels((4,), 0, 5)


@pytest.mark.parametrize("method", ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned",
                                    "aligned_ub"])
def test_every_method_trains_five_tasks(method, tiny_scene, tmp_path):
    """T = 5 (t, q, retrieval, seg, depth): five finite weights, and the step moves the
    decoder and the trainable encoder stages it reads, never the frozen ones."""
    tr = _aux_trainer(tiny_scene, tmp_path / method, f"mtl.method={method}", "model.tasks=[t,q,r]",
                      "model.descriptor_dim=16", "aux.tasks=[seg,depth]")
    assert tr.tasks == ("t", "q", "r", "seg", "depth") and tr.method.n_tasks == 5
    assert tr.decoder.levels == (2, 3) and tr.aux_train.size == (6, 8)
    batch = _first_batch(tr)
    dec0 = {k: v.clone() for k, v in tr.decoder.state_dict().items()}
    enc = tr.model.encoder
    stage2, frozen = enc.layer2[0].conv1.weight.detach().clone(), enc.layer1[0].conv1.weight.detach().clone()
    stats = tr.train_step(batch)
    assert len(stats["weights"]) == 5 and np.all(np.isfinite(stats["weights"])), stats["weights"]
    assert np.all(np.isfinite(stats["losses"])) and stats["losses"][3] > 0 and stats["losses"][4] > 0
    assert any(not torch.equal(dec0[k], v) for k, v in tr.decoder.state_dict().items())
    assert not torch.equal(enc.layer2[0].conv1.weight, stage2)
    assert torch.equal(enc.layer1[0].conv1.weight, frozen)
    if tr.method.level in ("z", "theta", "layer"):
        assert len(stats["grad_norms"]) == 5 and stats["grad_norms"][3] > 0 and stats["grad_norms"][4] > 0


def test_z_holds_the_decoder_inputs_through_their_own_node(tiny_scene, tmp_path):
    """Z = (last feature map, skips): the pose tasks' gradient on a skip's decoder node is
    zero (they reach that stage through the later stages, not through Z); the auxiliary
    tasks' is not; the Gram the Z-level methods see is the sum of the parts' Grams."""
    from reloc_train.auxiliary import aux_losses
    from reloc_train.losses import task_losses
    from reloc_train.mtl.engine import gram64

    tr = _aux_trainer(tiny_scene, tmp_path / "z", "aux.tasks=[seg,depth]")
    batch = _first_batch(tr)
    xa, xb = tr._input(batch["a"]), tr._input(batch["b"])
    pred, z, feats = tr.model.forward_pair_levels(xa, xb, tr.start, levels=tr.decoder.levels)
    skips = {lv: f.view_as(f) for lv, f in feats.items()}
    rows = torch.cat([batch["idx"][:, 0], batch["idx"][:, 1]]).numpy()
    losses = torch.cat([task_losses(pred, {"t": batch["t"], "q": batch["q"]}, ("t", "q")),
                        torch.stack(aux_losses(("seg", "depth"), *tr.decoder(z, skips),
                                                   tr.aux_train.batch(rows, "cpu")))])
    parts = [z, *skips.values()]
    g = [torch.autograd.grad(losses[t], parts, retain_graph=True, allow_unused=True) for t in range(4)]
    for t in (0, 1):  # t, q
        assert all(gi is None or float(gi.abs().sum()) == 0 for gi in g[t][1:])
        assert float(g[t][0].abs().sum()) > 0
    for t in (2, 3):  # seg, depth
        assert all(gi is not None and float(gi.abs().sum()) > 0 for gi in g[t])
    flat = [torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for gi, p in zip(row, parts)])
            for row in g]
    full = gram64(torch.stack(flat))
    by_part = sum(gram64(torch.stack([(row[k] if row[k] is not None else torch.zeros_like(parts[k])).reshape(-1)
                                      for row in g])) for k in range(len(parts)))
    assert torch.allclose(full, by_part, rtol=1e-9, atol=0)


def test_aux_changes_the_pose_features(tiny_scene, tmp_path):
    """From the same initial weights and batch, + segmentation moves the shared encoder
    differently from pose only: the auxiliary task does reach the pose features."""
    pose = _aux_trainer(tiny_scene, tmp_path / "pose")
    seg = _aux_trainer(tiny_scene, tmp_path / "seg", "aux.tasks=[seg]")
    assert torch.equal(pose.model.encoder.layer3[0].conv1.weight, seg.model.encoder.layer3[0].conv1.weight)
    batch = _first_batch(pose)
    for tr in (pose, seg):
        for _ in range(2):
            tr.train_step(batch)
    w_pose, w_seg = pose.model.encoder.layer3[0].conv1.weight, seg.model.encoder.layer3[0].conv1.weight
    assert not torch.allclose(w_pose, w_seg, atol=1e-7)
    # the pose heads see different features: their outputs on the batch differ
    with torch.no_grad():
        for tr in (pose, seg):
            tr.model.eval()
        a, b = pose._input(batch["a"]), pose._input(batch["b"])
        assert not torch.allclose(pose.model.forward_pair(a, b, pose.start)[0]["t"],
                                  seg.model.forward_pair(a, b, seg.start)[0]["t"], atol=1e-6)


def test_fit_keeps_the_decoder_in_the_checkpoint_not_in_the_model_file(tiny_scene, tmp_path):
    import json

    from reloc_ros.core.model import load_model
    from reloc_train.train import main

    out = tmp_path / "run"
    args = ["--data", str(tiny_scene), "--out", str(out), "--epochs", "1"]
    for s in AUX_TINY + ["run.max_steps_per_epoch=3", "aux.tasks=[seg,depth]"]:
        args += ["--set", s]
    assert main(args) == 0
    ck = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["aux_decoder"] is not None and any(k.startswith("seg.") for k in ck["aux_decoder"])
    model, info = load_model(out / "model.pt")  # the node's loader: the architecture alone
    plain = RelPoseNet(model.cfg)
    assert set(model.state_dict()) == set(plain.state_dict())  # no decoder weights
    meta = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["meta"]
    assert meta["aux_tasks"] == ["seg", "depth"] and meta["aux_levels"] == [2, 3]
    aux = meta["aux_validation"]
    assert 0 <= aux["miou"] <= 1 and aux["abs_rel"] > 0 and aux["median_abs_m"] > 0
    history = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss_seg", "loss_depth", "weight_seg", "weight_depth"} <= set(history)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[-1]["val_miou"] == pytest.approx(aux["miou"]) and metrics[-1]["step_seconds"] > 0
    # resume restores the decoder (the run is complete, so nothing more trains)
    from reloc_train.config import load_config
    from reloc_train.train import Trainer

    tr = Trainer(load_config([out / "config.yaml"]), resume=True)
    assert all(torch.equal(v, ck["aux_decoder"][k]) for k, v in tr.decoder.state_dict().items())


def test_aux_config_errors_name_the_problem(tiny_scene, copy_sample, tmp_path):
    from reloc_train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="aux.tasks"):
        load_config([], ["aux.tasks=[seg,normals]"])
    with pytest.raises(ConfigError, match=r"aux.levels: levels \[1\] are before the first trainable stage 2"):
        _aux_trainer(tiny_scene, tmp_path / "a", "aux.tasks=[seg]", "aux.levels=[1,3]")
    sample = copy_sample(tmp_path / "stairs")  # real 7-Scenes: depth, no labels
    with pytest.raises(ConfigError, match="no training frame under .* has a label image"):
        _aux_trainer(sample, tmp_path / "b", "aux.tasks=[seg]", "data.train_split=all", "data.val_split=all")


def test_step_cost_benchmark_runs_the_decoder():
    """reloc_train.experiments.table3 with aux.tasks: the step includes the decoder's two tasks (MGDA
    takes 5 encoder backward passes, against 3 without)."""
    from reloc_train.experiments.table3 import run_method
    from reloc_train.config import load_config

    base = [s for s in AUX_TINY if not s.startswith(("eval.", "data."))] + ["model.tasks=[t,q,r]",
                                                                              "model.descriptor_dim=16"]
    with_aux = run_method("mgda", load_config([], base + ["aux.tasks=[seg,depth]"]), 4, 2, 1, "cpu")
    assert with_aux["encoder_backwards"] == 5 and all(t > 0 for t in with_aux["step_times"])
    plain = run_method("mgda", load_config([], base), 4, 2, 1, "cpu")
    assert plain["encoder_backwards"] == 3


def test_aux_table_means_stds_and_the_one_sd_verdict(tmp_path, monkeypatch):
    """The experiment's report from per-run numbers: mean ± sd per cell, and the verdict
    "better in t and r by more than one sd" against pose only with the same method."""
    from reloc_train import aux_experiment as ax

    base = {"mean_t_m": 0.4, "mean_r_deg": 11.0, "retrieval_median_t_m": 0.5, "retrieval_median_r_deg": 12.0,
            "miou": 0.4, "abs_rel": 0.2, "median_abs_m": 0.3, "step_s": 1.0, "steps": 10, "aux_tasks": []}
    numbers = {"pose": ([0.30, 0.32, 0.34], [9.0, 9.2, 9.4]),  # sd 0.02 m, 0.2°
               "seg": ([0.25, 0.26, 0.27], [8.0, 8.1, 8.2]),  # better in both by > 1 sd
               "depth": ([0.31, 0.32, 0.33], [8.0, 8.1, 8.2])}  # t within 1 sd

    def fake(path):
        row, seed = path.parts[-3], int(path.name[4:])
        if row not in numbers:
            return None
        t, r = numbers[row]
        return base | {"median_t_m": t[seed], "median_r_deg": r[seed]}

    monkeypatch.setattr(ax, "read_run", fake)
    text = ax.report(tmp_path / "runs", [0, 1, 2], ["uniform"], tmp_path / "rep", wall_s=600)
    assert "| Uniform | pose only | 0.320 ± 0.020 |" in text
    assert "| Uniform | + segmentation | 0.260 ± 0.010 |" in text and "0.400 ± 0.000" in text
    v = [line for line in text.splitlines() if line.startswith("- Uniform")]
    assert "+ segmentation: t -0.060 m (1 sd 0.020) ✓, r -1.100 ° (1 sd 0.200) ✓: **better in both" in v[0]
    assert "+ depth: t +0.000 m (1 sd 0.020), r -1.100 ° (1 sd 0.200) ✓: not better" in v[1]
    assert "10 min" in text and (tmp_path / "rep" / "per_run.csv").read_text().count("\n") == 1 + 9
