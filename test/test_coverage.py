"""Map coverage: the oracle neighbour (d + r/30°) and the four figures, against brute force,
on the real 7-Scenes poses shipped in ../shared, and through the command."""

import json

import numpy as np
import pytest

from reloc_ros.core.geometry import make_pose, rotation_error_deg, translation_error
from reloc_ros.data.coverage import coverage, oracle_neighbours, read_pose_list
from reloc_ros.tools.coverage import main as coverage_main
from conftest import DEFAULT_SAMPLE

POSES = DEFAULT_SAMPLE.parent / "7scenes-poses"


def random_poses(rng, n, spread=1.0):
    q = rng.normal(size=(n, 4))
    q[:, 0] += 4.0  # mostly small rotations
    return np.stack([make_pose(rng.normal(scale=spread, size=3), qi) for qi in q])


def test_oracle_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    T_map, T_q = random_poses(rng, 300), random_poses(rng, 40)
    idx, d, r, within = oracle_neighbours(T_map, T_q, chunk=7)
    for i, T in enumerate(T_q):
        dd = translation_error(T_map, T[None])
        rr = rotation_error_deg(T_map, T[None])
        assert idx[i] == int(np.argmin(dd + rr / 30.0))
        assert d[i] == pytest.approx(dd[idx[i]]) and r[i] == pytest.approx(rr[idx[i]], abs=1e-6)
        assert within[i, 0] == bool(np.any((dd <= 0.5) & (rr <= 30))) and \
            within[i, 1] == bool(np.any((dd <= 0.25) & (rr <= 15)))
    c = coverage(T_map, T_q, "x")
    assert c.queries == 40 and c.median_d_m == pytest.approx(float(np.median(d)))
    assert c.within_50cm_30deg == pytest.approx(within[:, 0].mean())


@pytest.fixture
def real_poses():
    if not (POSES / "chess_train.txt").is_file():
        pytest.skip(f"7-Scenes poses not found at {POSES}")
    return POSES


def test_real_7scenes_figures_from_the_shipped_poses(real_poses):
    """The README of the pose files quotes these (every 10th test frame)."""
    names, T = read_pose_list(real_poses / "chess_train.txt")
    assert len(names) == 4000 and names == sorted(names) and names[0] == "seq-01/frame-000000.color.png"
    assert np.allclose(T[:, 3], [0, 0, 0, 1])
    # (q, t) is world-to-camera: the camera centre is -R^T t
    line = next(ln for ln in (real_poses / "chess_train.txt").read_text().splitlines()
                if ln.startswith(names[0] + " ")).split()
    from reloc_ros.core.geometry import quat_to_matrix
    R = quat_to_matrix(np.array([float(v) for v in line[1:5]]))
    np.testing.assert_allclose(T[0, :3, 3], -R.T @ np.array([float(v) for v in line[5:8]]), atol=1e-9)


def test_command_on_the_shipped_poses(real_poses, capsys):
    assert coverage_main([str(real_poses), "--stride", "10", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    chess = rows["chess"]
    assert (chess["frames"], chess["queries"]) == (4000, 200)
    assert chess["median_d_m"] == pytest.approx(0.244, abs=5e-4)
    assert chess["median_r_deg"] == pytest.approx(7.54, abs=5e-3)
    assert (chess["within_50cm_30deg"], chess["within_25cm_15deg"]) == (0.99, 0.65)
    mean_d = np.mean([r["median_d_m"] for r in rows.values()])
    assert mean_d == pytest.approx(0.298, abs=5e-4)


def test_command_on_a_scene_folder(sample_dir, capsys):
    assert coverage_main([str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert "7scenes-stairs-sample | 6 | 6 |" in out and "real 7-Scenes" in out
    assert coverage_main([str(sample_dir / "seq-01")]) == 2


def test_malformed_pose_list_names_the_line(tmp_path):
    bad = tmp_path / "x_train.txt"
    bad.write_text("seq-01/frame-000000.color.png 1 0 0 0 0 0 0 525\nseq-01/frame-000001.color.png 1 0\n")
    with pytest.raises(ValueError, match=r"x_train.txt:2"):
        read_pose_list(bad)
    with pytest.raises(ValueError, match="no frame"):
        coverage(np.zeros((0, 4, 4)), np.eye(4)[None])
