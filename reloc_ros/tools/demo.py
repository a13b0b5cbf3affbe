"""The end-to-end demo (README quick start, first command: ``scripts/demo``).

1. data: render the default synthetic 7-Scenes-format scene (or take ``--scene PATH``);
2. model: the shipped generic model (``models/generic/model.pt``, trained across the rooms52
   family's training rooms, never on this scene), or ``--model FILE``; ``--finetune`` trains
   it further on the scene's ``fit`` split (the training sequences but the last, held out to
   choose the epoch and to calibrate), ``--train`` trains the per-scene recipe from ImageNet
   (:mod:`reloc_train.recipes`);
3. database: encode the same frames with that model, and (``--refiner pnp``, the default)
   store their SIFT keypoints with depth for the PnP refiner;
4. calibration: fit the covariance and the publish threshold by cross-fitting on the map's
   own frames (:func:`reloc_ros.eval.calibrate.crossfit`: each block of a sequence is
   localized against the map without it and its neighbourhood); a map of fewer than 100
   frames gets none, and the node says it publishes the conservative default covariance;
5. bag: convert the test sequences to a rosbag2 (mcap), with a drifting odometry TF
   ``odom -> camera_link`` (2 % of the path) for the node's ``/initialpose`` gate;
6. online: start the relocalization node (refiner, calibrated, intrinsics from the bag's
   ``camera_info``, ``publish_initialpose`` on), the
   online evaluator and the bag replay as three separate processes talking over Fast DDS;
   the evaluator matches the node's poses and its ``/initialpose`` messages to the ground
   truth by stamp and writes a report (CSV, Markdown, plots);
7. print the summary table and where the plots are.

Every stage is cached in ``--out`` under a key of its inputs, so a second run only repeats
the online part. ``--fresh`` ignores the caches.

    scripts/demo                                    # an unseen synthetic room, the generic model
    scripts/demo --scene /data/7scenes/chess --finetune   # fine-tune the generic model on a scene
    scripts/demo --scene /data/7scenes/chess --model runs/chess/model.pt --device cuda
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from reloc_ros.core.calibration import CalibrationError
from reloc_ros.core.database import DatabaseError, FrameDatabase
from reloc_ros.core.device import resolve_device
from reloc_ros.core.featuremetric import DenseConfig
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError, load_model
from reloc_ros.core.pnp import PnPConfig
from reloc_ros.core.refiners import NO_REFINER, REFINERS
from reloc_ros.data.sevenscenes import Scene, SevenScenesError
from reloc_ros.eval.calibrate import calibrate
from reloc_ros.eval.calibrate import report as calibration_report
from reloc_ros.mapping.database import build_database
from reloc_ros.tools.bag.convert import convert_scene, summary_line
from reloc_sim import synthetic
from reloc_train.recipes import GENERIC_MODEL, RECIPES, scene_training_config
from reloc_train.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".cache" / "demo"
POSE_TOPIC = "/relocalization_node/pose"
IMAGE_TOPIC = "/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"

#: Drift of the bag's simulated odometry (a fraction of the path; see DriftingOdometry).
ODOMETRY_DRIFT = 0.02
#: --quick training (CI): a few steps, whatever the recipe; --train also shrinks the network.
QUICK_TRAIN = ["optim.epochs=2", "run.max_steps_per_epoch=6", "optim.batch_size=8", "eval.max_frames=4",
               "data.pairs.max_distance_m=1.5", "data.pairs.max_angle_deg=45"]
QUICK_NETWORK = ["model.input_size=[48,64]", "model.head_hidden=64"]


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def key_of(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(stamp: Path, key: str) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == key


# --------------------------------------------------------------------------- stages
def stage_data(args) -> Path:
    if args.scene:
        return args.scene
    cfg = synthetic.PRESETS[args.preset]
    key = key_of({"preset": args.preset, "seed": args.seed, "config": asdict(cfg)})
    root = args.out / f"data_{key}"
    scene_dir = root / cfg.name
    if not args.fresh and cached(root / "stamp", key):
        log(f"1/6 data: reusing {scene_dir}")
        return scene_dir
    log(f"1/6 data: rendering the synthetic scene (preset {args.preset!r}, {cfg.total_frames} frames at "
        f"{cfg.width}x{cfg.height}, {args.workers} workers) ...")
    t0 = time.time()
    shutil.rmtree(root, ignore_errors=True)
    scene_dir = Path(synthetic.generate_scene(root, cfg, seed=args.seed, workers=args.workers, progress=True))
    (root / "stamp").write_text(key)
    log(f"    rendered in {time.time() - t0:.0f} s")
    return scene_dir


def map_split(scene_dir: Path) -> str:
    """The map's frames: every training sequence (the calibration cross-fits on them)."""
    return "train"


def stage_model(args, scene_dir: Path) -> Path:
    if args.model and not args.finetune:
        log(f"2/6 model: using {args.model}")
        return args.model
    if not args.finetune and not args.train:
        if not GENERIC_MODEL.is_file():
            raise ModelFileError(GENERIC_MODEL, "the shipped generic model is missing (git checkout models/, "
                                                "or give --model FILE or --train)")
        log(f"2/6 model: the generic model {GENERIC_MODEL.relative_to(ROOT)} (never trained on this scene)")
        return GENERIC_MODEL
    recipe = RECIPES["finetune" if args.finetune else "per_scene"]
    init = args.model or GENERIC_MODEL
    extra = (QUICK_TRAIN + ([] if args.finetune else QUICK_NETWORK) if args.quick else []) \
        + ([f"mtl.method={args.method}"] if args.method else []) + list(args.set)
    cfg = scene_training_config(recipe, scene_dir, "", init=init if recipe.init else None, extra=extra,
                                device=args.device)
    key = key_of({"scene": str(scene_dir.resolve()), "scene_stamp": _scene_key(scene_dir), "config": cfg.as_dict(),
                  "device": args.device})
    run = args.out / f"model_{key}"
    if not args.fresh and (run / "model.pt").is_file() and cached(run / "stamp", key):
        log(f"2/6 model: reusing {run / 'model.pt'}")
        return run / "model.pt"
    what = f"fine-tuning {init}" if recipe.init else f"training {cfg.model.arch} from ImageNet"
    log(f"2/6 model: {what} with {cfg.mtl.method} on the {cfg.data.train_split!r} split (recipe {recipe.name}) ...")
    t0 = time.time()
    shutil.rmtree(run, ignore_errors=True)
    cfg.run.out = str(run)
    Trainer(cfg).fit()
    (run / "stamp").write_text(key)
    log(f"    trained in {time.time() - t0:.0f} s")
    return run / "model.pt"


def _scene_key(scene_dir: Path) -> str:
    stamp = scene_dir.parent / "stamp"
    return stamp.read_text() if stamp.is_file() else str(scene_dir.stat().st_mtime)


def stage_database(args, model: Path, scene_dir: Path) -> Path:
    device = resolve_device(args.device)
    net, info = load_model(model, device)
    split = map_split(scene_dir)
    kp = dense = None
    needs = REFINERS.get(args.refiner).needs if args.refiner != NO_REFINER else frozenset()
    if "keypoints" in needs:  # keypoints at the scene's own resolution, or the given settings
        intr = Scene(scene_dir).color_intrinsics
        kp = PnPConfig(image_size=(intr.width, intr.height))
        if args.pnp:
            d = json.loads(args.pnp.read_text())
            kp = PnPConfig.from_dict(d.get("pnp", d))
    if "dense" in needs:
        dense = DenseConfig()
    key = key_of({"model": info.fingerprint, "scene": str(scene_dir.resolve()), "scene_stamp": _scene_key(scene_dir),
                  "split": split, "keypoints": kp.as_dict() if kp else None,
                  "dense": dense.as_dict() if dense else None})
    db = args.out / f"db_{key}.pt"
    if not args.fresh and db.is_file():
        log(f"3/6 database: reusing {db}")
        return db
    log(f"3/6 database: encoding the {split!r} frames" + (f" and their {kp.matcher} keypoints" if kp else "")
        + (" and dense grids" if dense else "") + " ...")
    database = build_database(net, info, [Scene(scene_dir)], split, device, keypoints=kp, dense=dense)
    database.save(db)
    log(f"    {len(database)} frames in {database.meta['build_seconds']} s")
    return db


#: A map with fewer frames gets no calibration: the node publishes the conservative default
#: covariance (reloc_ros.core.uncalibrated) and sends no /initialpose.
MIN_CALIBRATION_MAP = 100


def stage_calibration(args, model: Path, db: Path, scene_dir: Path) -> Path | None:
    """The calibration file of (model, database, fusion, refiner), cross-fitted on the map's own
    frames (each block localized against the map without it and its neighbourhood); None for
    a map of fewer than :data:`MIN_CALIBRATION_MAP` frames."""
    scene = Scene(scene_dir)
    split = map_split(scene_dir)
    n = len(scene.frames(split))
    if n < MIN_CALIBRATION_MAP:
        log(f"4/6 calibration: skipped (the map has {n} frames, a cross-fitted calibration needs "
            f"{MIN_CALIBRATION_MAP}): the node publishes the conservative default covariance and sends no "
            "/initialpose")
        return None
    key = key_of({"db": FrameDatabase.load(db).checksum, "fusion": args.fusion, "top_k": args.top_k,
                  "refiner": args.refiner, "checks": args.checks, "holdout": "crossfit-v1"})
    path = args.out / f"calibration_{key}" / "calibration.json"
    if not args.fresh and path.is_file():
        log(f"4/6 calibration: reusing {path}")
        return path
    log(f"4/6 calibration: cross-fitting on the map's {n} frames ...")
    loc = Localizer.from_files(model, db, LocalizerConfig(top_k=args.top_k, fusion=FusionConfig(method=args.fusion),
                                                          refiner=args.refiner, checks=tuple(args.checks)),
                               args.device)
    cal, pr = calibrate(loc, [scene], split, holdout="crossfit", progress=False)
    cal.save(path, loc.db)
    (path.parent / "calibration.md").write_text(calibration_report(cal))
    for line in calibration_report(cal).splitlines()[2:]:
        if line.strip():
            log("    " + line)
    return path


def stage_bag(args, scene_dir: Path) -> Path:
    key = key_of({"scene": str(scene_dir.resolve()), "scene_stamp": _scene_key(scene_dir),
                  "max_frames": args.max_frames, "odometry": ODOMETRY_DRIFT})
    bag = args.out / f"bag_{key}"
    if not args.fresh and (bag / "metadata.yaml").is_file():
        log(f"5/6 bag: reusing {bag}")
        return bag
    log(f"5/6 bag: converting the test sequences to rosbag2 (mcap), odometry drift {ODOMETRY_DRIFT:g} ...")
    shutil.rmtree(bag, ignore_errors=True)
    log("    " + summary_line(convert_scene(scene_dir, bag, "test", max_frames=args.max_frames,
                                           odometry=ODOMETRY_DRIFT)))
    return bag


class Proc:
    """A child process whose output is echoed with a prefix and scanned for a marker."""

    def __init__(self, name: str, cmd: list[str], env: dict, marker: str | None = None, echo: bool = True):
        self.name, self.marker_seen = name, threading.Event()
        self.lines: list[str] = []
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1)
        self._t = threading.Thread(target=self._pump, args=(marker, echo), daemon=True)
        self._t.start()

    def _pump(self, marker, echo):
        for line in self.p.stdout:
            line = line.rstrip()
            self.lines.append(line)
            if echo:
                print(f"  [{self.name}] {line}", flush=True)
            if marker and marker in line:
                self.marker_seen.set()

    def wait_marker(self, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self.marker_seen.wait(0.2):
                return True
            if self.p.poll() is not None:
                return False
        return False

    def stop(self, timeout: float = 20.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._t.join(timeout=5)
        return self.p.returncode


def stage_online(args, model: Path, db: Path, bag: Path, calibration: Path | None) -> Path:
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    env.setdefault("ROS_LOG_DIR", str(args.out / "ros_log"))
    env["PYTHONUNBUFFERED"] = "1"
    report = args.out / "report"
    shutil.rmtree(report, ignore_errors=True)
    timeline = args.out / "timeline.json"
    log(f"6/6 online: node + evaluator + replay over Fast DDS (ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}) ...")
    node = Proc("node", [sys.executable, "-m", "reloc_ros.ros.node", "--ros-args", "--params-file",
                         str(ROOT / "config" / "relocalization.yaml"), "-p", f"model_path:={model}",
                         "-p", f"database_path:={db}", "-p", f"device:={args.device}", "-p", "max_rate_hz:=0.0",
                         "-p", "image_reliable:=true", "-p", f"top_k:={args.top_k}", "-p", "database_frame:=map",
                         "-p", f"fusion.method:={args.fusion}", "-p", "publish_initialpose:=true",
                         "-p", f"refiner:={args.refiner}", "-p", "use_camera_info:=true",
                         "-r", f"camera_info:={CAMERA_INFO_TOPIC}"]
                + (["-p", f"calibration_path:={calibration}"] if calibration else [])
                + (["-p", f"publish_checks:={json.dumps(list(args.checks))}"] if args.checks else [])
                + ["-r", f"image:={IMAGE_TOPIC}"], env, marker="ready:")
    procs = [node]
    try:
        if not node.wait_marker(180):
            raise SystemExit("the node did not start; see its output above")
        ev = Proc("evaluator", [sys.executable, "-m", "reloc_ros.tools.bag.evaluate", "--bag", str(bag), "--out",
                                str(report), "--pose-topic", POSE_TOPIC, "--until-idle", "4", "--timeline",
                                str(timeline), "--progress", "5"], env, marker="evaluating ")
        procs.append(ev)
        if not ev.wait_marker(120):
            raise SystemExit("the evaluator did not start; see its output above")
        time.sleep(1.0)  # its subscription is discovered before the first frame goes out
        rp = Proc("replay", [sys.executable, "-m", "reloc_ros.tools.bag.replay", str(bag), "--rate", str(args.rate),
                             "--wait-subscribers", "1", "--timeline", str(timeline), "--progress", "5"], env)
        procs.append(rp)
        rp.p.wait()
        if rp.p.returncode != 0:
            raise SystemExit("the replay failed; see its output above")
        ev.p.wait(timeout=120)
        if ev.p.returncode != 0:
            raise SystemExit("the evaluator failed; see its output above")
    finally:
        for p in reversed(procs):
            p.stop()
    if node.p.returncode not in (0, None):
        log(f"warning: the node exited with {node.p.returncode}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="reloc_ros end-to-end demo: data, training, database, bag, "
                                             "node + replay + online evaluation")
    ap.add_argument("--scene", type=Path, help="a 7-Scenes-format scene instead of the synthetic one")
    ap.add_argument("--model", type=Path, help="a model file instead of the generic one (with --finetune: the one "
                                               "fine-tuned)")
    ap.add_argument("--finetune", action="store_true", help="fine-tune the generic model (or --model) on the "
                                                            "scene's training split first")
    ap.add_argument("--train", action="store_true", help="train the per-scene recipe from ImageNet instead")
    ap.add_argument("--preset", default="demo", help="synthetic scene preset (reloc_sim.synthetic.PRESETS)")
    ap.add_argument("--method", help="MTL method of --finetune / --train (default: the recipe's)")
    ap.add_argument("--set", action="append", default=[], help="extra training overrides (key=value)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--fusion", default="consensus", help="consensus | top1 | triangulate")
    ap.add_argument("--refiner", choices=["none", "pnp", "lm", "pnp+lm"],
                    help="refinement after fusion (default pnp; none with --quick, whose 80x60 frames are too "
                         "small for SIFT)")
    ap.add_argument("--checks", nargs="*", default=None,
                    help="publish checks of the refined pose (reloc_ros.core.checks; default: verify with a "
                         "refiner that reads keypoints, chosen on the repeated-structure family)")
    ap.add_argument("--pnp", type=Path, help="PnP settings (JSON: PnPConfig fields, or a realscene choice.json)")
    ap.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    ap.add_argument("--max-frames", type=int, help="test frames in the bag (default all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (cached between runs)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached stages")
    ap.add_argument("--quick", action="store_true", help="tiny scene and a few training steps (CI)")
    args = ap.parse_args(argv)
    if args.finetune and args.train:
        ap.error("--finetune and --train exclude each other")
    if args.quick and not args.scene:
        args.preset = "tiny"
    if args.refiner is None:
        args.refiner = "none" if args.quick else "pnp"
    if args.checks is None:
        args.checks = ["verify"] if args.refiner in ("pnp", "pnp+lm") else []
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times = {}
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)

    try:
        t = time.time()
        scene_dir = stage_data(args)
        times["data"] = time.time() - t
        t = time.time()
        model = stage_model(args, scene_dir)
        times["model"] = time.time() - t
        t = time.time()
        db = stage_database(args, model, scene_dir)
        times["database"] = time.time() - t
        t = time.time()
        calibration = stage_calibration(args, model, db, scene_dir)
        times["calibration"] = time.time() - t
        t = time.time()
        bag = stage_bag(args, scene_dir)
        times["bag"] = time.time() - t
        t = time.time()
        report = stage_online(args, model, db, bag, calibration)
        times["online"] = time.time() - t
    except (SevenScenesError, ModelFileError, DatabaseError, CalibrationError, ValueError) as e:
        print(f"[demo] error: {e}", file=sys.stderr)
        return 2
    if args.scene:  # a user's scene: its test split was read, so the run goes into the test ledger
        _ledger_line(args, model, report)
    summary = report / "summary.md"
    print()
    print(summary.read_text() if summary.is_file() else "(no summary written)")
    total = time.time() - t0
    print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; total {total:.0f} s")
    print(f"report: {report}/ (summary.md, per_frame.csv, trajectory.png, errors_over_time.png, cdf.png)")
    (args.out / "demo_times.json").write_text(json.dumps(times | {"total": total}, indent=2))
    return 0


def _ledger_line(args, model: Path, report: Path) -> None:
    """One line in docs/results/test_ledger.csv for an online run on a user's scene."""
    import csv  # lazy: only here

    from reloc_train.experiments.unseen import LEDGER, LEDGER_FIELDS, _commit  # lazy: the training extra

    d = json.loads((report / "summary.json").read_text())
    line = dict.fromkeys(LEDGER_FIELDS, "")
    line.update(date=time.strftime("%Y-%m-%d %H:%M:%S"), commit=_commit(), recipe=f"demo-online:{args.refiner}",
                data=str(args.scene), scenes=Path(args.scene).name, queries=d.get("frames"),
                model_fingerprint=load_model(model)[1].fingerprint[:24],
                consensus_t_m=f"{d.get('median_t_m', float('nan')):.4f}",
                consensus_r_deg=f"{d.get('median_r_deg', float('nan')):.4f}",
                pnp_failures=f"{d.get('rejection_rate', float('nan')):.4f}", out=str(report))
    with open(LEDGER, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=LEDGER_FIELDS).writerow(line)


if __name__ == "__main__":
    sys.exit(main())
