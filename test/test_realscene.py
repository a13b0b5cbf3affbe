"""The real-scene experiment's measures (reloc_train.experiments.realscene)."""

import math

import pytest

from reloc_train.experiments.realscene import MATCHER_CONFIGS, pnp_config, recovery, score_rows


def _row(pnp, fused, lm=None, chain=None, sharp=100.0, start=None):
    r = {"sharpness": sharp, "consensus_t_m": fused[0], "consensus_r_deg": fused[1],
         "pnp_t_m": pnp[0] if pnp else math.nan, "pnp_r_deg": pnp[1] if pnp else math.nan, "pnp_ms": 10.0}
    for name, v in (("lm", lm), ("chain", chain)):
        if v is not None:
            r[f"{name}_t_m"], r[f"{name}_r_deg"] = v
    if start:
        r["chain_start"] = start
    return r


def test_score_counts_unsolved_by_the_fused_pose_and_wrong_only_among_solved():
    rows = [_row((0.01, 0.5), (0.4, 10)), _row((0.02, 0.8), (0.3, 9)), _row(None, (0.5, 12)),
            _row((0.9, 30), (0.2, 5)), _row((0.03, 1.0), (0.4, 8), sharp=5.0)]
    s = score_rows(rows, "pnp")
    assert s["queries"] == 5 and s["unsolved"] == pytest.approx(0.2) and s["wrong"] == pytest.approx(0.2)
    assert s["median_t_m"] == pytest.approx(0.03) and s["within_5cm_5deg"] == pytest.approx(0.6)
    blurred = score_rows(rows, "pnp", skip_below=10.0)  # the blurred query now counts as unsolved
    assert blurred["unsolved"] == pytest.approx(0.4) and blurred["median_t_m"] == pytest.approx(0.4)


def test_recovery_counts_what_lm_and_the_chain_bring_back():
    rows = [_row(None, (0.5, 12), lm=(0.04, 2), chain=(0.04, 2), start="fused"),
            _row(None, (0.2, 5), lm=(0.6, 20), chain=(0.02, 1), start="partial"),
            _row((0.01, 0.2), (0.3, 5))]
    rec = recovery(rows, "pnp")
    assert rec["pnp_failures"] == 2 and rec["with_partial"] == 1 and rec["fused_good_25cm"] == 1
    assert rec["lm_from_fused_25cm"] == 1 and rec["chain_25cm"] == 2 and rec["chain_5cm"] == 2
    assert rec["chain_from_partial_25cm"] == 1 and rec["lm_from_fused_on_partial_25cm"] == 0


def test_every_setting_is_a_valid_pnp_config(sample_dir):
    from reloc_ros.data.sevenscenes import Scene

    sc = Scene(sample_dir)
    for name in MATCHER_CONFIGS:
        cfg = pnp_config(name, sc)
        assert cfg.image_size in ((320, 240), (640, 480)) and cfg.matcher in name
