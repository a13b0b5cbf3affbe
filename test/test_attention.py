"""Grad-CAM++ attention maps (reloc_train.experiments.attention): the layers picked, the maps against a
hand computation of the paper's equation 19, the query-only gradient, and the PNG command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from reloc_ros.core.model import ModelConfig, RelPoseNet, resize_rgb
from reloc_ros.data.sevenscenes import Scene, read_color
from reloc_train.experiments.attention import TARGETS, QueryBranch, attention_maps, layer_stages


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=32)).eval()


def test_layers_1_to_4_are_the_last_stage_of_each_stride(net):
    assert layer_stages(net) == [1, 2, 3, 4]  # layer1 .. layer4
    lite = RelPoseNet(ModelConfig(arch="efficientnet_lite0", input_size=(120, 160)))
    assert layer_stages(lite) == [2, 3, 5, 8]  # blocks 1, 2, 4 and the head


def _oracle(net, x, f_ref, stage, fn):
    """Grad-CAM++ by hand: eq. 19 of Chattopadhyay et al. on the stage's output."""
    acts = {}
    mod = net.encoder.stages()[stage][-1]
    h = mod.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    out = QueryBranch(net, f_ref)(x)
    h.remove()
    A = acts["a"]
    g = torch.autograd.grad(fn(out[0]), A)[0][0].double().numpy()
    A = A[0].detach().double().numpy()
    alpha = g ** 2 / (2 * g ** 2 + A.sum(axis=(1, 2), keepdims=True) * g ** 3 + 1e-6)
    alpha = np.where(g != 0, alpha, 0)
    w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    cam = np.maximum((w[:, None, None] * A).sum(0), 0)
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    cam = cv2.resize(cam.astype(np.float32), (x.shape[-1], x.shape[-2]))
    return (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)


def test_maps_match_equation_19_on_the_query_branch(net, tiny_scene):
    sc = Scene(tiny_scene)
    fr = sc.frames("all")
    q, ref = read_color(fr[20].color_path), read_color(fr[3].color_path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    maps, stages, out = attention_maps(net, q, ref)
    assert stages == [1, 2, 3, 4] and set(maps) == set(TARGETS)
    for name in TARGETS:
        assert len(maps[name]) == 4
        for m in maps[name]:
            assert m.shape == (48, 64) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 + 1e-6
    assert not np.allclose(maps["|t|"][2], maps["rotation angle"][2])  # two different explanations
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    # the oracle, for the translation norm at layer 3 and the angle at layer 4
    x = net.preprocess(torch.from_numpy(resize_rgb(q, (48, 64)))[None])
    with torch.no_grad():
        f_ref = net.pose_feature(net.encoder(net.preprocess(torch.from_numpy(resize_rgb(ref, (48, 64)))[None])))
    for name, k in (("|t|", 2), ("rotation angle", 3)):
        expect = _oracle(net, x, f_ref, stages[k], TARGETS[name])
        assert np.abs(maps[name][k] - expect).max() < 1e-3, name
    # [t, q] is what the node computes for this pair: predict(f_reference, f_query)
    with torch.no_grad():
        p = net.predict(f_ref, net.pose_feature(net.encoder(x)))
    assert np.allclose(out, torch.cat([p["t"], p["q"]], 1)[0].numpy(), atol=1e-5)


def test_command_writes_the_grid(tiny_scene, tmp_path):
    from PIL import Image

    from reloc_ros.core.model import save_model
    from reloc_train.experiments.attention import main

    torch.manual_seed(1)
    paths = []
    for k in range(2):
        p = tmp_path / f"m{k}.pt"
        save_model(p, RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=32)))
        paths += ["--model", str(p)]
    out = tmp_path / "grid.png"
    assert main(paths + ["--label", "a", "--label", "b", "--data", str(tiny_scene), "--frames", "3:5", "--out",
                         str(out)]) == 0
    w, h = Image.open(out).size
    assert w > 3 * h  # 10 columns, 2 rows
    with pytest.raises(SystemExit, match="no frame seq-03/frame-000099"):
        main(paths + ["--data", str(tiny_scene), "--frames", "3:99", "--out", str(out)])
