"""A refiner from outside the package (test/plugins/anchor_refiner.py), made known only
through the documented plugin paths (docs/extending.md), runs through the localizer, the
calibration, the evaluator and the node process over DDS; no other file knows its name."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rosutil import Client, image_msg, ros_env, start_node, stop_node

PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture(scope="module")
def anchor():
    """The plugin, imported the way every command does it (load_plugins)."""
    from reloc_ros.core.registry import load_plugins

    sys.path.insert(0, str(PLUGINS))
    try:
        load_plugins(["anchor_refiner"])
        yield sys.modules["anchor_refiner"]
    finally:
        sys.path.remove(str(PLUGINS))


def test_a_plugin_refiner_runs_in_the_localizer_and_the_calibration(anchor, tmp_path, tiny_model, tiny_db,
                                                                     tiny_scene):
    from reloc_ros.core.calibration import Calibration, signal_names
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.core.refiners import REFINERS, refiner_names
    from reloc_ros.data.sevenscenes import Scene, read_color
    from reloc_ros.eval.calibrate import calibrate

    assert "anchor" in refiner_names() and REFINERS.get("anchor") is anchor.AnchorRefiner
    assert signal_names("anchor") == anchor.SIGNALS
    cfg = LocalizerConfig(fusion=FusionConfig(min_inliers=1), refiner="anchor")
    loc = Localizer.from_files(tiny_model, tiny_db, cfg, "cpu")
    sc = Scene(tiny_scene)
    rgb = read_color(sc.frames("train")[5].color_path)
    K = sc.color_intrinsics.scaled(*loc.refine_image_size).K
    fused = loc.fuse(loc.hypothesize(rgb))
    r = loc.localize(rgb, K)
    top1 = loc.poses[r.hypotheses.db_index[0]]
    np.testing.assert_allclose(r.pose[:3, 3], 0.5 * (fused.pose[:3, 3] + top1[:3, 3]), atol=1e-9)
    assert r.ok and not r.calibrated and r.refinement == {"ok": True, "gap_m": pytest.approx(
        np.linalg.norm(fused.pose[:3, 3] - top1[:3, 3]))}
    cal, _ = calibrate(loc, [sc], "train", progress=False, min_poses=20)
    assert cal.refiner == "anchor" and cal.signal_names == list(anchor.SIGNALS)
    path = tmp_path / "anchor_calibration.json"
    from reloc_ros.core.database import FrameDatabase

    cal.save(path, FrameDatabase.load(tiny_db))
    loc = Localizer.from_files(tiny_model, tiny_db, cfg, "cpu", path)
    r = loc.localize(rgb, K)
    assert r.calibrated and r.confidence == pytest.approx(Calibration.load(path).confidence(r.signals))


def test_a_plugin_refiner_runs_in_the_evaluator_command(anchor, tmp_path, tiny_model, tiny_db, tiny_scene):
    from reloc_ros.eval.evaluate import main

    out = tmp_path / "eval"
    assert main(["--model", str(tiny_model), "--db", str(tiny_db), "--scene", str(tiny_scene), "--split", "train",
                 "--refiner", "anchor", "--plugin", "anchor_refiner", "--min-inliers", "1", "--max-frames", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "fused+anchor" in summary["methods"] and summary["queries"] == 2
    assert summary["summary"]["fused+anchor"]["accepted"] == 2


@pytest.mark.timeout(240)
def test_a_plugin_refiner_runs_in_the_node_over_dds(anchor, tmp_path, tiny_model, tiny_db, tiny_scene):
    """The node imports the plugin named by its ``plugins`` parameter; its poses are the
    offline localizer's, refined by the plugin."""
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color

    sc = Scene(tiny_scene)
    intr = sc.color_intrinsics
    offline = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(fusion=FusionConfig(min_inliers=1),
                                                                         refiner="anchor"), "cpu")
    K = intr.scaled(*offline.refine_image_size).K
    frames = [read_color(f.color_path) for f in sc.frames("train")[::8]]
    refs = [offline.localize(rgb, K) for rgb in frames]
    assert all(r.ok for r in refs)
    env = {**ros_env(tmp_path), "PYTHONPATH": str(PLUGINS)}
    ci = f"camera_intrinsics:=[{intr.fx},{intr.fy},{intr.cx},{intr.cy},{float(intr.width)},{float(intr.height)}]"
    proc = start_node(tmp_path, env, tiny_model, tiny_db, "refiner:=anchor", "plugins:=['anchor_refiner']",
                      "min_inliers:=1", "max_rate_hz:=0.0", "image_reliable:=true", ci)
    client = Client(env)
    try:
        client.wait_for_node(proc)
        for k, rgb in enumerate(frames):
            client.pub_image.publish(image_msg(rgb, k))
            time.sleep(0.3)
        client.wait(lambda: len(client.poses) >= len(frames), 30)
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert len(client.poses) == len(frames)
    for (_, m), ref in zip(client.poses, refs):
        p, o = m.pose.pose.position, m.pose.pose.orientation
        te, re = pose_errors(make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w)), ref.pose)
        assert te < 1e-6 and re < 1e-4
