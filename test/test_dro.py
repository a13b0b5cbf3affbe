"""DRO (reloc_ros.core.dro): its SE(3) maths against OpenCV, its cost against the LM
baseline's numpy cost, its file checks, and its training command (train/dro.py)."""

import cv2
import numpy as np
import pytest
import torch

from reloc_ros.core.dro import DRO, DROConfig, apply_increment, load_dro, rotation_angle, save_dro, so3_exp
from reloc_ros.core.featuremetric import bilinear
from reloc_ros.core.geometry import project


def test_so3_exp_and_angle_match_opencv():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(size=(20, 3)), 1e-6 * rng.normal(size=(5, 3)), np.zeros((1, 3))])
    R = so3_exp(torch.from_numpy(w)).numpy()
    for wi, Ri in zip(w, R):
        assert np.allclose(Ri, cv2.Rodrigues(wi)[0], atol=1e-9)
    ang = rotation_angle(torch.from_numpy(R)).numpy()
    assert np.allclose(ang, np.minimum(np.linalg.norm(w, axis=1), 2 * np.pi - np.linalg.norm(w, axis=1)), atol=1e-5)
    T = torch.eye(4, dtype=torch.float64)[None].repeat(2, 1, 1)
    T[:, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    v, r = torch.tensor([[0.1, 0, 0], [0, 0, 0.2]], dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    assert torch.allclose(apply_increment(T, v, r)[:, :3, 3], T[:, :3, 3] + v)  # camera axes = map axes here


def _scene(rng, B=1, M=2, gh=6, gw=8, D=4, h=15, w=20):
    T_db = torch.eye(4).repeat(B, M, 1, 1)
    T_db[..., :3, 3] = torch.from_numpy(rng.normal(scale=0.05, size=(B, M, 3))).float()
    xyz = torch.zeros(B, M, gh, gw, 3)
    xyz[..., 0] = torch.from_numpy(rng.uniform(-0.8, 0.8, (B, M, gh, gw))).float()
    xyz[..., 1] = torch.from_numpy(rng.uniform(-0.6, 0.6, (B, M, gh, gw))).float()
    xyz[..., 2] = torch.from_numpy(rng.uniform(1.5, 3, (B, M, gh, gw))).float()
    xyz[0, 0, 0, :3] = 0.0  # three pixels without depth
    K = torch.tensor([[[20.0, 0, 9.5], [0, 20.0, 7.0], [0, 0, 1]]]).repeat(B, 1, 1)
    Fq = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(B, D, h, w))).float(), dim=1)
    return T_db, xyz, K, Fq


def test_residuals_match_the_numpy_cost_and_vanish_at_the_true_pose():
    rng = np.random.default_rng(1)
    T_db, xyz, K, Fq = _scene(rng)
    cfg = DROConfig(levels=(0,), in_channels=(4,), dim=4, stages=(0,), iterations=2, top_m=2)
    dro = DRO(cfg)
    B, M, gh, gw, _ = xyz.shape
    Xw = xyz.reshape(B, M, -1, 3) @ T_db[:, :, :3, :3].transpose(-1, -2) + T_db[:, :, None, :3, 3]
    has = xyz.reshape(B, M, -1, 3)[..., 2] > 0
    T = torch.eye(4)[None]
    T[0, :3, 3] = torch.tensor([0.02, -0.01, 0.03])
    # references: the query's own features where the points project (so the residual is 0 at T)
    _, uv, _ = project(T[0].double().numpy(), Xw[0].reshape(-1, 3).double().numpy(), K[0].double().numpy())
    f_ref, inside = bilinear(Fq[0].double().numpy(), uv)
    f = torch.from_numpy(f_ref.reshape(M, -1, 4)).float()[None]  # (B, M, P, D)
    r, _, valid, _ = dro.residuals(T, Fq, K, Xw, f, has)
    assert valid.sum() >= 0.8 * has.sum() and torch.all(valid.flatten() <= torch.from_numpy(inside) & has.flatten())
    assert float(r.abs().max()) < 1e-5
    T2 = T.clone()
    T2[0, :3, 3] += torch.tensor([0.05, 0.0, 0.0])
    r2, around2, valid2, _ = dro.residuals(T2, Fq, K, Xw, f, has)
    _, uv2, _ = project(T2[0].double().numpy(), Xw[0].reshape(-1, 3).double().numpy(), K[0].double().numpy())
    f2, _ = bilinear(Fq[0].double().numpy(), uv2)
    want = (f2 - f_ref).reshape(M, -1, 4)
    m = valid2[0].numpy()
    assert m.sum() > 0.5 * has.sum() and np.allclose(r2[0].numpy()[m], want[m], atol=1e-4)
    # the forward pass: one pose per iteration, finite, moved from the start by the heads only
    poses, info = dro(T, [Fq], [K], [xyz], [f.transpose(2, 3).reshape(B, M, 4, gh, gw)], T_db)
    assert len(poses) == 1 + 2 and all(torch.isfinite(p).all() for p in poses)
    assert 0 < float(info["valid"][0]) <= float(has.sum()) and float(info["low_share"][0]) <= 1


def test_all_invalid_depth_gives_no_move_and_no_nan():
    rng = np.random.default_rng(2)
    T_db, xyz, K, Fq = _scene(rng)
    xyz[..., 2] = 0.0
    cfg = DROConfig(levels=(0,), in_channels=(4,), dim=4, stages=(0,), iterations=3, top_m=2)
    T0 = torch.eye(4)[None]
    poses, info = DRO(cfg)(T0, [Fq], [K], [xyz], [torch.zeros(1, 2, 4, 6, 8)], T_db)
    assert torch.allclose(poses[-1], T0) and int(info["valid"][0]) == 0 and torch.isfinite(info["cost"]).all()


def test_dro_file_round_trip_and_clear_errors(tmp_path):
    from reloc_ros.core.model.file import ModelFileError, ModelInfo

    cfg = DROConfig(levels=(1, 0), in_channels=(8, 4), dim=4, hidden=8)
    dro = DRO(cfg)
    info = ModelInfo(path=tmp_path / "model.pt", config=None, fingerprint="abc")
    save_dro(tmp_path / "dro.pt", dro, info)
    back, payload = load_dro(tmp_path / "dro.pt", info)
    assert back.cfg == cfg and all(torch.equal(a, b) for a, b in zip(dro.state_dict().values(),
                                                                      back.state_dict().values()))
    with pytest.raises(ModelFileError, match="another model"):
        load_dro(tmp_path / "dro.pt", ModelInfo(path=tmp_path / "other.pt", config=None, fingerprint="xyz"))
    raw = torch.load(tmp_path / "dro.pt", weights_only=True)
    raw["state_dict"]["init.bias"] += 1
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(ModelFileError, match="fingerprint"):
        load_dro(tmp_path / "edited.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "dro.pt").read_bytes()[:200])
    with pytest.raises(ModelFileError, match="cut.pt.*truncated"):
        load_dro(tmp_path / "cut.pt")


def _overfits_one_batch(model_path, db_path):
    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.model import load_model
    from reloc_ros.data.sevenscenes import Scene
    from reloc_train.dro import batch, dro_losses, perturb, prepare

    model, _ = load_model(model_path)
    db = FrameDatabase.load(db_path)
    data = prepare(model, db, {s["name"]: Scene(s["root"]) for s in db.scenes}, None, db.dense.config.levels,
                   progress=False, own_sequence_gap=2)
    torch.manual_seed(0)
    dro = DRO(DROConfig(levels=db.dense.config.levels, in_channels=tuple(int(f.shape[-1]) for f in db.dense.feat),
                        hidden=8, iterations=2))
    opt = torch.optim.Adam(dro.parameters(), lr=1e-2)
    idx = torch.arange(4)
    T0 = perturb(data.poses[idx], torch.Generator().manual_seed(1), 0.1, 2.0).float()
    first = None
    for _ in range(60):
        poses, _ = dro(T0, *batch(data, db, dro, idx, None, 3))
        losses, st = dro_losses(poses, data.poses[idx].float(), 0.8)
        first = st["t_last"] if first is None else first
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
    assert st["t_last"] < 0.7 * first, (first, st["t_last"])


def test_training_learns_resumes_exactly_and_feeds_the_localizer(tiny_model, tiny_dense_db, tiny_scene, tmp_path):
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color
    from reloc_train.dro import main

    common = ["--model", str(tiny_model), "--db", str(tiny_dense_db), "--batch", "4", "--val-split", "train",
              "--val-every", "30", "--save-every", "10", "--iterations", "2", "--hidden", "8", "--device", "cpu",
              "--own-sequence-gap", "2", "--warmup", "5"]  # the tiny scene's two sequences do not overlap
    assert main(common + ["--out", str(tmp_path / "a"), "--steps", "30"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "20"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "30", "--resume"]) == 0
    a, _ = load_dro(tmp_path / "a" / "dro.pt")
    b, pb = load_dro(tmp_path / "b" / "dro.pt")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k  # resuming reproduces the uninterrupted run
    hist = (tmp_path / "a" / "history.csv").read_text().splitlines()
    assert len(hist) == 31 and (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert pb["meta"]["steps"] == 30 and len(pb["meta"]["val"]["median_t"]) == 1 + 3 * 2
    # it can learn: on one fixed batch, 60 steps bring the last iteration's pose closer
    _overfits_one_batch(tiny_model, tiny_dense_db)
    loc = Localizer.from_files(tiny_model, tiny_dense_db, LocalizerConfig(refiner="dro", top_k=3),
                               device="cpu", dro_path=tmp_path / "a" / "dro.pt")
    sc = Scene(tiny_scene)
    fr = sc.frames("test")[0]
    w, h = loc.refine_image_size
    res = loc.localize(read_color(fr.color_path), sc.color_intrinsics.scaled(w, h).K)
    assert res.refinement is not None and res.refinement["iterations"] == len(a.cfg.stages) * 2
    assert np.isfinite(res.refinement["final_cost"]) and res.timings_ms["refine"] > 0
    with pytest.raises(ValueError, match="DRO file"):
        Localizer.from_files(tiny_model, tiny_dense_db, LocalizerConfig(refiner="dro"), device="cpu")
    wrong = DRO(DROConfig(levels=a.cfg.levels, in_channels=(3, 3), hidden=8))
    with pytest.raises(ValueError, match="do not fit a DRO"):
        Localizer(loc.model, loc.db, LocalizerConfig(refiner="dro"), "cpu", refiner_files={"dro": wrong})


def test_flow_head_solve_recovers_a_known_increment():
    """Given the true displacements of the projections (and equal weights), the flow head's
    least-squares solve through the projection Jacobian returns the increment that caused
    them (to first order): the Jacobian is checked against the real projection."""
    from reloc_ros.core.dro import _FlowHead

    g = torch.Generator().manual_seed(0)
    X = torch.randn(1, 2, 10, 3, generator=g, dtype=torch.float64)
    X[..., 2] = X[..., 2].abs() + 2
    K = torch.tensor([[[50.0, 0, 20], [0, 55, 15], [0, 0, 1]]], dtype=torch.float64)

    def proj(Xc):
        return torch.stack([50 * Xc[..., 0] / Xc[..., 2] + 20, 55 * Xc[..., 1] / Xc[..., 2] + 15], -1)

    xi = torch.tensor([0.001, -0.002, 0.0015, 0.001, 0.002, -0.001], dtype=torch.float64)
    T = apply_increment(torch.eye(4, dtype=torch.float64)[None], xi[None, :3], xi[None, 3:])
    du = proj((X - T[:, None, None, :3, 3]) @ T[:, None, :3, :3]) - proj(X)

    class Fixed(torch.nn.Module):
        def forward(self, h):
            return torch.cat([du, torch.full_like(du[..., :1], 20.0)], -1)

    head = _FlowHead(4).double()
    head.net, head.damping = Fixed(), 1e-12
    got = head(None, torch.ones(1, 2, 10, dtype=torch.bool), X, K)[0]
    assert torch.allclose(got, xi, rtol=2e-2, atol=2e-6)
