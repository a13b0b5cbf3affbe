"""The pair sampler: thresholds hold, draws are deterministic, and it agrees with brute force."""

import numpy as np
import pytest

from reloc_train.pairs import PairConfig, PairSampler, candidate_partners, sample_pairs
from reloc_ros.core.geometry import make_pose


def random_poses(n, seed=0, extent=3.0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q = rng.normal(size=4)
        out.append(make_pose(rng.uniform(0, extent, 3), q / np.linalg.norm(q)))
    return np.stack(out)


def brute_force(poses, cfg, seq):
    c, z = poses[:, :3, 3], poses[:, :3, 2]
    res = []
    for i in range(len(poses)):
        d = np.linalg.norm(c - c[i], axis=1)
        ang = np.degrees(np.arccos(np.clip(z @ z[i], -1, 1)))
        ok = (d >= cfg.min_distance_m) & (d <= cfg.max_distance_m) & (ang <= cfg.max_angle_deg)
        ok[i] = False
        if not cfg.same_sequence:
            ok &= seq != seq[i]
        if not cfg.cross_sequence:
            ok &= seq == seq[i]
        res.append(np.flatnonzero(ok))
    return res


@pytest.mark.parametrize("same,cross", [(True, True), (False, True), (True, False)])
def test_candidates_match_brute_force(same, cross):
    poses = random_poses(300, seed=1)
    seq = np.repeat([1, 2, 3], 100)
    cfg = PairConfig(max_distance_m=1.2, min_distance_m=0.1, max_angle_deg=60,
                     same_sequence=same, cross_sequence=cross)
    got = candidate_partners(poses, cfg, seq)
    want = brute_force(poses, cfg, seq)
    assert sum(len(g) for g in got) > 50  # the case is not vacuous
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_sampled_pairs_respect_thresholds_and_are_deterministic():
    poses = random_poses(400, seed=2)
    cfg = PairConfig(max_distance_m=1.0, min_distance_m=0.05, max_angle_deg=45, pairs_per_frame=3)
    a = sample_pairs(poses, cfg, seed=7, epoch=0)
    b = sample_pairs(poses, cfg, seed=7, epoch=0)
    c = sample_pairs(poses, cfg, seed=7, epoch=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == 2 and len(a) > 100
    assert not np.array_equal(a, c)  # a new epoch draws new pairs
    i, j = a[:, 0], a[:, 1]
    assert np.all(i != j)
    d = np.linalg.norm(poses[i, :3, 3] - poses[j, :3, 3], axis=1)
    cosang = np.einsum("nk,nk->n", poses[i, :3, 2], poses[j, :3, 2])
    assert d.min() >= 0.05 and d.max() <= 1.0
    assert np.degrees(np.arccos(np.clip(cosang, -1, 1))).max() <= 45 + 1e-6
    # at most pairs_per_frame per anchor, and no duplicate pair per anchor
    _, counts = np.unique(i, return_counts=True)
    assert counts.max() <= 3
    assert len(np.unique(a, axis=0)) == len(a)


def test_sampler_on_a_trajectory_and_edge_cases():
    # A straight walk: frames 10 cm apart, all looking the same way.
    poses = np.stack([make_pose([0.1 * k, 0, 0], [1, 0, 0, 0]) for k in range(50)])
    cfg = PairConfig(max_distance_m=0.35, min_distance_m=0.15, max_angle_deg=10, pairs_per_frame=10)
    s = PairSampler(poses, cfg, seed=0)
    # partners of frame 10 are frames 7, 8, 12, 13 (0.2 and 0.3 m away)
    np.testing.assert_array_equal(s.candidates[10], [7, 8, 12, 13])
    assert s.n_isolated == 0
    p = s.pairs(0)
    assert len(p) == sum(len(c) for c in s.candidates)
    assert sample_pairs(np.zeros((0, 4, 4)), cfg).shape == (0, 2)
    with pytest.raises(ValueError):
        PairConfig(min_distance_m=2, max_distance_m=1)
    with pytest.raises(ValueError):
        candidate_partners(poses, cfg, seq_ids=np.zeros(3))
