"""The relocalizer core: database files, mismatch errors, retrieval, end-to-end queries, evaluation."""

import json
import shutil

import numpy as np
import pytest
import torch

from reloc_ros.data.sevenscenes import Scene, read_color
from reloc_ros.core.database import DatabaseError, FrameDatabase
from reloc_ros.mapping.database import main as db_main
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.geometry import make_pose, pose_errors
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.files import atomic_save
from reloc_ros.core.model import ModelConfig, RelPoseNet, load_model, save_model
from reloc_ros.core.retrieval import ExactIndex, HNSWIndex


def test_database_round_trip(tiny_db, tiny_scene):
    db = FrameDatabase.load(tiny_db)
    sc = Scene(tiny_scene)
    frames = sc.frames("train")
    assert len(db) == len(frames) and db.frame_ids == [f.id for f in frames]
    np.testing.assert_allclose(db.poses.numpy(), sc.poses(frames))
    np.testing.assert_allclose(db.descriptors.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert db.scenes[0]["name"] == sc.name and db.scenes[0]["intrinsics"]["fx"] == sc.color_intrinsics.fx
    assert db.features.shape == (len(frames), 512) and db.bytes_per_frame() > 4096
    # saving again gives back the same tensors
    path = tiny_db.with_name("copy.db.pt")
    db.save(path)
    db2 = FrameDatabase.load(path)
    for a, b in zip(db._tensors().values(), db2._tensors().values()):
        assert torch.equal(a, b)
    assert db2.model == db.model and db2.meta == db.meta


def test_database_features_are_the_encoder_output(tiny_db, tiny_model, tiny_scene):
    model, _ = load_model(tiny_model)
    db = FrameDatabase.load(tiny_db)
    fr = Scene(tiny_scene).frames("train")[3]
    x = torch.tensor(read_color(fr.color_path))[None]
    with torch.no_grad():
        f, d = model.encode(model.preprocess(x))
    torch.testing.assert_close(db.features[3], f[0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(db.descriptors[3], d[0], atol=1e-3, rtol=1e-3)


def test_file_format_ids_are_unchanged(tiny_db, tiny_model):
    """Model files and databases written before the re-layout carry these ids and must load."""
    assert torch.load(tiny_model, weights_only=True)["format"] == "reloc_ros.model"
    assert torch.load(tiny_db, weights_only=True)["format"] == "reloc_ros.database"


def test_database_errors_name_the_problem(tiny_db, tiny_model, tmp_path):
    # truncated
    bad = tmp_path / "truncated.db.pt"
    bad.write_bytes(tiny_db.read_bytes()[:5000])
    with pytest.raises(DatabaseError, match="truncated") as e:
        FrameDatabase.load(bad)
    assert str(bad) in str(e.value)
    # foreign file (a model file)
    with pytest.raises(DatabaseError, match="not a reloc_ros database"):
        FrameDatabase.load(tiny_model)
    # wrong version, edited contents
    payload = torch.load(tiny_db, weights_only=True)
    payload["format_version"] = 99
    atomic_save(payload, tmp_path / "v99.db.pt")
    with pytest.raises(DatabaseError, match="format version 99"):
        FrameDatabase.load(tmp_path / "v99.db.pt")
    payload = torch.load(tiny_db, weights_only=True)
    payload["tensors"]["poses"][0, 0, 3] += 1.0
    atomic_save(payload, tmp_path / "edited.db.pt")
    with pytest.raises(DatabaseError, match="checksum"):
        FrameDatabase.load(tmp_path / "edited.db.pt")
    with pytest.raises(DatabaseError, match="does not exist"):
        FrameDatabase.load(tmp_path / "missing.db.pt")
    # a different model: fingerprint, and input size
    db = FrameDatabase.load(tiny_db)
    other = RelPoseNet(ModelConfig(arch="resnet18", input_size=(64, 85), head_hidden=64))
    save_model(tmp_path / "other.pt", other)
    _, info = load_model(tmp_path / "other.pt")
    with pytest.raises(DatabaseError) as e:
        db.check_model(info, tiny_db)
    assert "fingerprint" in str(e.value) and "input size [64, 85]" in str(e.value) and str(tiny_db) in str(e.value)
    with pytest.raises(DatabaseError, match="fingerprint"):
        Localizer.from_files(tmp_path / "other.pt", tiny_db, device="cpu")
    # the CLI answers with one line and exit code 2
    assert db_main(["info", str(bad)]) == 2


def test_exact_and_hnsw_retrieval_agree():
    g = torch.Generator().manual_seed(0)
    db = torch.nn.functional.normalize(torch.randn(2000, 64, generator=g), dim=1)
    q = torch.nn.functional.normalize(db[:10] + 0.05 * torch.randn(10, 64, generator=g), dim=1)
    s, i = ExactIndex(db).search(q, 5)
    assert torch.equal(i[:, 0], torch.arange(10))  # each query's own frame first
    assert torch.all(s[:, :-1] >= s[:, 1:])  # sorted
    sub = torch.arange(1000, 2000)
    _, isub = ExactIndex(db).search(q, 3, subset=sub)
    assert torch.all(isub >= 1000)
    _, ih = HNSWIndex(db).search(q, 5)
    assert torch.equal(ih[:, 0], torch.arange(10))
    _, ihs = HNSWIndex(db).search(q, 3, subset=sub)
    assert torch.all(ihs >= 1000)


def test_end_to_end_query_beats_random_poses(tiny_model, tiny_db, tiny_scene):
    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=5), device="cpu")
    loc.warmup(1)
    sc = Scene(tiny_scene)
    frames = sc.frames("test")
    T_gt = sc.poses(frames)
    results = [loc.localize(read_color(f.color_path)) for f in frames]
    ok = [r for r in results if r.ok]
    assert len(ok) >= len(frames) // 2
    te = np.array([pose_errors(r.pose, T)[0] for r, T in zip(results, T_gt) if r.ok])
    # random poses inside the scene's bounding box of the training cameras
    rng = np.random.default_rng(0)
    c = loc.db.poses.numpy()[:, :3, 3]
    rand = np.stack([make_pose(rng.uniform(c.min(0), c.max(0)), rng.normal(size=4)) for _ in range(200)])
    te_rand = np.array([pose_errors(rand[i], T_gt[i % len(T_gt)])[0] for i in range(200)])
    assert np.median(te) < 0.5 * np.median(te_rand), (np.median(te), np.median(te_rand))
    for r in ok:
        C = r.covariance
        assert C.shape == (6, 6) and np.allclose(C, C.T) and np.all(np.linalg.eigvalsh(C) > 0)
        assert set(r.timings_ms) == {"encode", "search", "heads", "fusion", "total"}
        assert 0 < r.confidence <= 1 and r.n_inliers >= 2 and r.scene == sc.name
    h = results[0].hypotheses
    assert h.t.shape == (5, 3) and h.q.shape == (5, 4) and np.all(h.scores[:-1] >= h.scores[1:])


def test_weak_consensus_gives_no_pose(tiny_model, tiny_db, tiny_scene):
    cfg = LocalizerConfig(top_k=5, fusion=FusionConfig(method="consensus", inlier_t_m=1e-4,
                                                       inlier_r_deg=1e-3, min_inliers=3))
    loc = Localizer.from_files(tiny_model, tiny_db, cfg, device="cpu")
    r = loc.localize(read_color(Scene(tiny_scene).frames("test")[0].color_path))
    assert not r.ok and r.pose is None and "weak consensus" in r.reason


def test_multi_scene_database_keeps_scene_ids(tiny_model, tiny_scene, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(tiny_scene, root / "alpha")
    from reloc_sim import synthetic

    cfg = synthetic.PRESETS["tiny"]
    other = synthetic.generate_scene(tmp_path / "gen", cfg, seed=5, workers=1, progress=False)
    shutil.copytree(other, root / "beta")
    assert db_main(["build", "--model", str(tiny_model), "--scene", str(root), "--out", str(tmp_path / "two.db.pt"),
                    "--device", "cpu"]) == 0
    db = FrameDatabase.load(tmp_path / "two.db.pt")
    assert db.scene_names == ["alpha", "beta"]
    n_a = len(Scene(root / "alpha").frames("train"))
    assert torch.equal(db.scene_index, torch.tensor([0] * n_a + [1] * (len(db) - n_a)))
    loc = Localizer.from_files(tiny_model, tmp_path / "two.db.pt", LocalizerConfig(top_k=4), device="cpu")
    for name in ("alpha", "beta"):
        # a mapped frame's own descriptor wins retrieval, so its scene is picked
        for f in Scene(root / name).frames("train")[::7]:
            h = loc.hypothesize(read_color(f.color_path))
            assert h.scene == name
            assert len({int(loc.db.scene_index[i]) for i in h.db_index}) == 1  # never mixed
    loc_b = Localizer.from_files(tiny_model, tmp_path / "two.db.pt", LocalizerConfig(top_k=4, scene="beta"), "cpu")
    h = loc_b.hypothesize(read_color(Scene(root / "alpha").frames("test")[0].color_path))
    assert h.scene == "beta"


def test_evaluate_and_benchmark_commands(tiny_model, tiny_db, tiny_scene, tmp_path, capsys):
    from reloc_ros.tools import benchmark, evaluate

    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(tiny_model), "--db", str(tiny_db), "--scene", str(tiny_scene),
                          "--out", str(out), "--device", "cpu", "--max-frames", "8"]) == 0
    md = (out / "summary.md").read_text()
    for m in ("retrieval-only", "top1", "consensus", "triangulate"):
        assert f"| {m} |" in md
    assert (out / "cdf.png").stat().st_size > 10_000 and (out / "trajectory.png").stat().st_size > 10_000
    import csv

    rows = list(csv.DictReader(open(out / "per_frame.csv")))
    assert len(rows) == 8 and all(np.isfinite(float(r["retrieval-only_t_m"])) for r in rows)
    capsys.readouterr()
    assert benchmark.main(["--model", str(tiny_model), "--db", str(tiny_db), "--queries", "5",
                           "--sizes", "1000", "--device", "cpu", "--backbones", "efficientnet_lite0,resnet18",
                           "--backbone-sizes", "32x48,64x96"]) == 0
    text = capsys.readouterr().out
    assert "total / encode" in text and "| 1000 | exact |" in text and "| 1000 | hnsw |" in text
    lite0 = next(line for line in text.splitlines() if line.startswith("| efficientnet_lite0 |")).split("|")
    assert float(lite0[2]) == pytest.approx(3.4, abs=0.2)  # encoder parameters (M), classifier excluded
    assert 0 < float(lite0[3]) and 0 < float(lite0[4])
    # the localizer's own records of the same queries: recall@1 <= @5 <= @10 <= oracle
    res = json.loads((out / "summary.json").read_text())
    r = res["recall"]
    assert 0 <= r["1"] <= r["5"] <= r["10"] <= res["oracle_recall"] <= 1
