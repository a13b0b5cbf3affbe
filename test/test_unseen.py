"""The unseen-scene benchmark command and the fine-tuning start (model.init)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from reloc_ros.core.model import load_model


def test_pnp_recovery_counts_only_failures_whose_fused_pose_is_bad_too():
    from reloc_train.experiments.unseen import pnp_recovery

    nan = float("nan")
    rows = [
        # PnP good: not a failure
        {"consensus_t_m": 1.0, "consensus_r_deg": 20, "sift+pnp_t_m": 0.01, "sift+pnp_r_deg": 0.5,
         "fused+lm_t_m": 1.0, "fused+lm_r_deg": 20},
        # PnP failed but the fused pose was already good: not counted
        {"consensus_t_m": 0.1, "consensus_r_deg": 3, "sift+pnp_t_m": nan, "sift+pnp_r_deg": nan,
         "fused+lm_t_m": 0.05, "fused+lm_r_deg": 1},
        # failures: LM recovers the first, not the second (rotation 12° > 10°)
        {"consensus_t_m": 0.6, "consensus_r_deg": 15, "sift+pnp_t_m": nan, "sift+pnp_r_deg": nan,
         "fused+lm_t_m": 0.2, "fused+lm_r_deg": 9},
        {"consensus_t_m": 0.6, "consensus_r_deg": 15, "sift+pnp_t_m": 2.0, "sift+pnp_r_deg": 40,
         "fused+lm_t_m": 0.2, "fused+lm_r_deg": 12},
    ]
    assert pnp_recovery(rows, "consensus") == {"failures": 2, "fused+lm": 1, "recovered": 1}


def test_ledger_lines_append_atomically_with_a_header_once(tmp_path):
    from reloc_train.experiments.unseen import LEDGER_FIELDS, append_ledger

    m = {"median_t_m": 0.5, "median_r_deg": 10.0}
    result = {"date": "2026-12-07 18:00:00", "commit": "abc1234", "conf": {"recipe": "generic"}, "data": "d",
              "scenes": {"a": {}, "b": {}}, "config_hash": "c0ffee", "model_fingerprint": "f" * 64,
              "summary": {"queries": 10, "methods": {"retrieval-only": m, "top1": m, "consensus": m},
                          "ratio_mean": {"top1_t": 1.0, "top1_r": 1.0, "oracle_t": 0.5, "oracle_r": 0.6,
                                         "recall5_over_oracle": 0.9},
                          "pnp": {"failures": 3, "recovered": 2}}}
    ledger = tmp_path / "results" / "test_ledger.csv"
    ledger.parent.mkdir()
    append_ledger(result, tmp_path / "out", ledger)
    append_ledger(result | {"commit": "def5678"}, tmp_path / "out", ledger)
    rows = list(csv.DictReader(open(ledger)))
    assert list(rows[0]) == LEDGER_FIELDS
    assert [r["commit"] for r in rows] == ["abc1234", "def5678"]
    assert rows[0]["scenes"] == "a b" and rows[0]["pnp_failures"] == "3" and rows[0]["top1_ratio_t"] == "1.0000"


def test_generic_recipe_on_a_scene_reports_every_column_and_writes_the_ledger(tiny_model, tiny_scene, tmp_path):
    """The whole command on the tiny scene: a database of its training split, every query
    through the localizer, the oracle-neighbour regression, the frozen GeM recall."""
    from reloc_train.experiments.unseen import main

    ledger = tmp_path / "ledger.csv"
    out = tmp_path / "unseen"
    assert main(["--recipe", "generic", "--model", str(tiny_model), "--data", str(tiny_scene), "--out", str(out),
                 "--max-frames", "6", "--refiners", "pnp", "--ledger", str(ledger), "--device", "cpu"]) == 0
    import json

    res = json.loads((out / "unseen.json").read_text())
    sc = res["scenes"][tiny_scene.name]
    assert sc["queries"] == 6 and res["summary"]["queries"] == 6
    # the oracle neighbour is the closest map frame: never farther than the retrieved one
    assert sc["oracle"]["neighbour_t_m"] <= sc["methods"]["retrieval-only"]["median_t_m"] + 1e-9
    assert np.isfinite(sc["oracle"]["regressed_t_m"]) and 0.0 <= sc["frozen_gem_recall_at_1"] <= 1.0
    assert sc["ratio"]["top1_t"] == pytest.approx(sc["methods"]["top1"]["median_t_m"]
                                                  / sc["methods"]["retrieval-only"]["median_t_m"])
    assert "sift+pnp" in sc["methods"] and sc["coverage"]["queries"] == 6
    assert (out / tiny_scene.name / "summary.md").is_file() and "Unseen scenes" in (out / "unseen.md").read_text()
    rows = list(csv.DictReader(open(ledger)))
    assert len(rows) == 1 and rows[0]["recipe"] == "generic" and rows[0]["queries"] == "6"
    assert load_model(tiny_model)[1].fingerprint.startswith(rows[0]["model_fingerprint"])


def test_model_init_starts_from_every_weight_and_refuses_another_network(tiny_model, tiny_scene, tmp_path):
    from reloc_train.config import ConfigError, load_config
    from reloc_train.train import init_from_model
    from reloc_ros.core.model import RelPoseNet

    src, info = load_model(tiny_model)
    net = RelPoseNet(src.cfg)
    assert "fingerprint" in init_from_model(net, tiny_model)
    for k, v in src.state_dict().items():
        assert np.array_equal(net.state_dict()[k].numpy(), v.numpy()), k
    other = load_config([], ["model.arch=resnet18", "model.input_size=[48,64]", "model.head_hidden=32"])
    with pytest.raises(ConfigError, match="head_hidden 64 \\(config: 32\\)"):
        init_from_model(RelPoseNet(other.model.model_config()), tiny_model)


def test_finetune_recipe_takes_the_files_network_and_holds_out_the_last_training_sequence(tiny_model, tiny_scene,
                                                                                           tmp_path):
    from reloc_train.recipes import RECIPES, scene_training_config

    cfg = scene_training_config(RECIPES["finetune"], tiny_scene, tmp_path / "ft", init=tiny_model)
    info = load_model(tiny_model)[1]
    assert cfg.model.init == str(tiny_model)
    assert cfg.model.model_config() == info.config
    assert (cfg.data.train_split, cfg.data.val_split) in (("fit", "calib"), ("train", "test"))
    with pytest.raises(ValueError, match="does not train"):
        scene_training_config(RECIPES["generic"], tiny_scene, tmp_path / "g")
