"""Training: config layering, real training steps per MTL method, the model file, resume, DDP."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import yaml

from reloc_ros.core.model import load_model
from reloc_train.config import ConfigError, TrainConfig, load_config, resume_mismatches
from reloc_train.pairs import PairConfig
from reloc_train.mtl import METHODS

TINY = [
    "model.arch=resnet18", "model.input_size=[48,64]", "model.head_hidden=64", "model.pretrained=none",
    "optim.batch_size=4", "optim.lr=1e-3", "run.workers=0", "run.log_every=1", "eval.max_frames=8",
    "data.pairs.max_distance_m=1.5", "data.pairs.max_angle_deg=45",
]


def tiny_cfg(scene, out, *extra):
    return load_config([], TINY + [f"data.root={scene}", f"run.out={out}", *extra])


def test_config_layers_and_rejects_typos(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 0.5\nmodel:\n  arch: resnet18\n")
    cfg = load_config([f], ["optim.lr=0.25", "mtl.options={alpha: 2.0}", "optim.weight_decay=1e-3"])
    assert cfg.optim.lr == 0.25 and cfg.model.arch == "resnet18"
    assert cfg.mtl.options == {"alpha": 2.0}
    assert cfg.optim.weight_decay == 1e-3  # "1e-3" (YAML 1.1 reads a string) is a float here
    assert cfg.optim.batch_size == 16  # untouched default
    assert isinstance(cfg.data.pairs, PairConfig) and cfg.model.input_size == (256, 341)
    with pytest.raises(ConfigError, match="'optim.lrr'"):
        load_config([], ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="'data.pairs.max_angle'"):
        load_config([], ["data.pairs.max_angle=3"])
    with pytest.raises(ConfigError, match="'optim.batch_size' must be an integer"):
        load_config([], ["optim.batch_size=big"])
    with pytest.raises(ConfigError, match="'model.input_size' needs 2 values"):
        load_config([], ["model.input_size=[1,2,3]"])
    other = load_config([], ["optim.lr=0.1", "run.workers=7"])
    assert resume_mismatches(cfg.as_dict(), other.as_dict()) == [
        "model.arch: 'resnet18' -> 'resnet34'", "mtl.options: {'alpha': 2.0} -> {}", "optim.lr: 0.25 -> 0.1",
        "optim.weight_decay: 0.001 -> 0.0"]


def test_train_yaml_lists_the_dataclass_defaults():
    """config/train.yaml documents the defaults; the dataclasses are the truth."""
    path = Path(__file__).resolve().parents[1] / "config" / "train.yaml"
    assert yaml.safe_load(path.read_text()) == TrainConfig().as_dict()


def test_flags_set_typed_fields_without_yaml(tmp_path):
    from reloc_train.train import build_parser, config_from_args

    args = build_parser().parse_args(["--data", "a: b", "--out", str(tmp_path / "x"), "--seed", "3",
                                      "--set", "run.seed=1", "--method", "mgda"])
    cfg = config_from_args(args)
    assert cfg.data.root == "a: b" and cfg.run.seed == 3 and cfg.mtl.method == "mgda"


def _adam_step_of(method_name: str, weight_decay: float, **options):
    """One optimizer step from a fixed gradient: (network parameter change, method parameter change)."""
    from reloc_train.mtl import build_method
    from reloc_train.train import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    method = build_method(method_name, 2, **options)
    with torch.no_grad():
        for p in method.parameters():
            p.fill_(0.5)
    opt = build_optimizer(net, method, lr=1e-2, weight_decay=weight_decay, method_lr=1e-3)
    before = [p.detach().clone() for p in (*net.parameters(), *method.parameters())]
    for p in (*net.parameters(), *method.parameters()):
        p.grad = torch.zeros_like(p)  # no gradient at all: only weight decay can move them
    for p in method.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    after = [p.detach() for p in (*net.parameters(), *method.parameters())]
    n_net = len(list(net.parameters()))
    d_net = max(float((a - b).abs().max()) for a, b in zip(after[:n_net], before[:n_net]))
    d_method = [float((a - b).abs().max()) for a, b in zip(after[n_net:], before[n_net:])]
    return d_net, d_method


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm"])
def test_optimizer_uses_the_methods_parameter_groups(method):
    """lr_scale sets the step of the method's own parameters; weight decay reaches only the network."""
    _, (base,) = _adam_step_of(method, 0.0)
    _, (scaled,) = _adam_step_of(method, 0.0, lr_scale=10.0)
    assert base == pytest.approx(1e-3, rel=1e-3)  # Adam's first step is lr * sign(grad)
    assert scaled == pytest.approx(10 * base, rel=1e-3)
    # weight decay moves the network's parameters (zero gradient) but not the method's
    d_net, _ = _adam_step_of(method, 0.5)
    assert d_net > 1e-4
    from reloc_train.mtl import build_method
    from reloc_train.train import build_optimizer

    groups = build_optimizer(torch.nn.Linear(3, 2), build_method(method, 2), 1e-2, 0.5, 1e-3).param_groups
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]


def test_trainer_optimizer_honours_lr_scale_and_spares_method_parameters(tiny_scene, tmp_path):
    from reloc_train.train import Trainer

    tr = Trainer(tiny_cfg(tiny_scene, tmp_path / "u", "mtl.method=uncertainty", "mtl.options={lr_scale: 10.0}",
                          "optim.weight_decay=0.01", "optim.method_lr=0.002"))
    own = {id(p) for p in tr.method.parameters()}
    (group,) = [g for g in tr.opt.param_groups if any(id(p) in own for p in g["params"])]
    assert group["lr"] == pytest.approx(0.02) and group["weight_decay"] == 0.0
    net = [g for g in tr.opt.param_groups if g is not group]
    assert all(g["weight_decay"] == 0.01 for g in net)
    assert sum(len(g["params"]) for g in net) == len(list(tr.model.parameters()))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_on_a_real_batch(method, tiny_scene, tmp_path):
    """A few real training steps on one batch of the tiny scene: the summed task loss goes
    down and the task weights stay finite. (Each loss alone need not fall: MGDA may put all
    the weight on one task, and under Adam's per-parameter steps the other can rise.)"""
    from reloc_train.train import Trainer

    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tiny_scene, tmp_path / method, f"mtl.method={method}", "optim.schedule=constant"))
    batch = next(iter(torch.utils.data.DataLoader(tr.dataset, batch_size=4)))

    def losses():
        from reloc_train.losses import task_losses

        with torch.no_grad():
            pred, _ = tr.model.forward_pair(tr.model.preprocess(batch["a"]), tr.model.preprocess(batch["b"]))
            return task_losses(pred, {"t": batch["t"], "q": batch["q"]}, tr.tasks).numpy()

    before = losses()
    weights = []
    for _ in range(12):
        stats = tr.train_step(batch)
        weights.append(np.asarray(stats["weights"], dtype=float))
    after = losses()
    W = np.stack(weights)
    assert np.all(np.isfinite(W)), W
    assert after.sum() < 0.9 * before.sum(), (method, before, after, W[-1])
    assert np.all(np.isfinite(after))


PAPER_METHODS = ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned", "aligned_ub"]
THREE_TASKS = ["model.arch=efficientnet_lite0", "model.freeze_stages=6", "model.tasks=[t,q,r]",
               "model.descriptor_dim=16", "model.pretrained=imagenet"]


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_three_tasks_train_on_cached_features(method, tiny_scene, tmp_path):
    """T = 3 (t, q, retrieval) on EfficientNet-Lite0 with 6 frozen, cached stages: every paper
    method gives 3 finite weights and lowers the summed loss of a batch; the frozen stages
    do not move."""
    from reloc_train.train import Trainer

    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tiny_scene, tmp_path / method, f"mtl.method={method}", "optim.schedule=constant",
                          *THREE_TASKS))
    assert tr.start == 6 and tr.overlap is not None and tr.dataset.store.cache.dtype == torch.float16
    tr.dataset.set_epoch(0, tr.mine_hard_negatives())
    batch = next(iter(torch.utils.data.DataLoader(tr.dataset, batch_size=4)))
    frozen = tr.model.encoder.net.conv_stem.weight.detach().clone()

    def summed():
        from reloc_train.losses import task_losses

        with torch.no_grad():
            tr.model.eval()
            target = {"t": batch["t"], "q": batch["q"], "r": tr.overlap.labels(
                torch.cat([batch["idx"][:, 0], batch["idx"][:, 1]]).numpy())}
            pred, _ = tr.model.forward_pair(batch["a"].float(), batch["b"].float(), tr.start)
            tr.model.train()
            return task_losses(pred, target, tr.tasks).numpy()

    before = summed()
    for _ in range(10):
        stats = tr.train_step(batch)
    after = summed()
    assert len(stats["weights"]) == 3 and np.all(np.isfinite(stats["weights"])), stats["weights"]
    assert np.isfinite(after).all() and after.sum() < before.sum(), (before, after)
    assert torch.equal(tr.model.encoder.net.conv_stem.weight, frozen)


def test_fit_writes_model_history_tensorboard(tiny_scene, tmp_path):
    from reloc_train.train import main

    out = tmp_path / "run"
    args = ["--data", str(tiny_scene), "--out", str(out), "--method", "uncertainty", "--epochs", "2"]
    for s in TINY + ["run.max_steps_per_epoch=3"]:
        args += ["--set", s]
    assert main(args) == 0
    model, info = load_model(out / "model.pt")
    assert info.meta["mtl_method"] == "uncertainty"
    assert info.meta["training_data"]["frames"] > 0 and info.meta["steps"] == 6
    assert info.config.arch == "resnet18" and info.config.input_size == (48, 64)
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 6 and {"loss_t", "loss_q", "weight_t", "weight_q", "lr"} <= set(rows[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert np.isfinite(metrics[-1]["val_median_t_m"])
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # the model file is enough to rebuild and run the network
    x = torch.zeros(1, 3, 48, 64)
    f, d = model.encode(x)
    assert model.predict(f, f)["q"].shape == (1, 4)


def _scripted_criteria(monkeypatch, criteria):
    """Make Trainer.validate report these criteria, one per epoch, after the real validation,
    and keep a copy of the weights at each; returns that list of state dicts."""
    from reloc_train.train import Trainer

    real, seen = Trainer.validate, []

    def scripted(self):
        val = real(self)
        val["val_criterion"] = criteria[len(seen)]
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return val

    monkeypatch.setattr(Trainer, "validate", scripted)
    return seen


def _fit(tiny_scene, out, epochs, *extra):
    from reloc_train.train import main

    args = ["--data", str(tiny_scene), "--out", str(out), "--method", "uniform", "--epochs", str(epochs)]
    for s in TINY + ["run.max_steps_per_epoch=2", *extra]:
        args += ["--set", s]
    return main(args)


def _same_weights(model, state) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_model_file_is_the_best_validated_epoch_not_the_last(tiny_scene, tmp_path, monkeypatch):
    seen = _scripted_criteria(monkeypatch, [2.0, 1.0, 1.5])
    assert _fit(tiny_scene, tmp_path / "run", 3) == 0
    model, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["best_epoch"] == 2 and info.meta["criterion"] == 1.0 and info.meta["stopped"] is None
    assert _same_weights(model, seen[1]) and not _same_weights(model, seen[2])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["val_criterion"] for m in metrics] == [2.0, 1.0, 1.5]


def test_a_diverging_run_stops_says_so_and_keeps_its_best_epoch(tiny_scene, tmp_path, monkeypatch, capsys):
    seen = _scripted_criteria(monkeypatch, [1.0, 0.8, 2.5, 0.1])  # 2.5 > 3 x 0.8: diverged at epoch 3
    assert _fit(tiny_scene, tmp_path / "run", 4) == 3
    assert len(seen) == 3  # epoch 4 never ran
    model, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["best_epoch"] == 2 and _same_weights(model, seen[1])
    assert "validation criterion 2.5 at epoch 3 is over 3 times the best, 0.8 at epoch 2" in info.meta["stopped"]
    err = capsys.readouterr().err
    assert "training diverged" in err and "model.pt holds the best epoch (2)" in err


def test_a_non_finite_loss_stops_the_run(tiny_scene, tmp_path, monkeypatch, capsys):
    from reloc_train.train import Trainer

    real = Trainer.train_step

    def poisoned(self, batch):
        stats = real(self, batch)
        if self.global_step == 2:  # the third step (global_step counts completed steps)
            stats["losses"] = [float("nan")] + list(stats["losses"][1:])
        return stats

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    assert _fit(tiny_scene, tmp_path / "run", 3) == 3
    _, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["best_epoch"] == 1 and info.meta["steps"] == 3
    assert info.meta["stopped"] == "the loss of task t is not finite at step 3 (epoch 2)"
    assert "training diverged: the loss of task t is not finite" in capsys.readouterr().err


def test_with_nothing_to_validate_on_the_last_epoch_is_written(tiny_scene, tmp_path, monkeypatch, caplog):
    import reloc_train.train as tr
    from reloc_train.validate import METRIC_KEYS

    monkeypatch.setattr(tr, "validate", lambda *a, **k: {"scenes": {}, "mean": {m: float("nan") for m in METRIC_KEYS}})
    assert _fit(tiny_scene, tmp_path / "run", 2) == 0  # not a divergence
    _, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["best_epoch"] is None and info.meta["steps"] == 4 and info.meta["stopped"] is None
    assert "no validation query" in caplog.text


def test_validation_scenes_apart_from_the_training_ones(tiny_scene, tmp_path):
    """data.val_root: the validation scenes' own training frames are the map, their test frames
    the queries; the criterion is the mean of median t / 0.1 m + median r / 5 deg."""
    assert _fit(tiny_scene, tmp_path / "run", 1, f"data.val_root={tiny_scene}", "eval.max_frames=6") == 0
    _, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["validation_scenes"] == [tiny_scene.name]
    (s,) = info.meta["validation"]["scenes"].values()
    assert s["count"] == 6
    assert info.meta["criterion"] == pytest.approx(s["median_t_m"] / 0.1 + s["median_r_deg"] / 5.0)
    with pytest.raises(ConfigError, match="eval.diverge_factor must be > 1"):
        load_config([], ["eval.diverge_factor=1"])


def _run_train(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "reloc_train.train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.timeout(300)
def test_resume_after_kill_matches_uninterrupted_run(tiny_scene, tmp_path):
    """Kill -9 a run in the middle of its second epoch, resume it, and get exactly the
    weights of an uninterrupted run (checkpoints are atomic and carry all RNG state)."""
    common = ["--data", str(tiny_scene), "--method", "mgda", "--epochs", "3"]
    for s in TINY + ["run.max_steps_per_epoch=6"]:
        common += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = _run_train(common + ["--out", str(tmp_path / "ref")], env)
    out = tmp_path / "killed"
    p = _run_train(common + ["--out", str(out)], env)
    ck = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert ck.exists(), p.communicate()[0] if p.poll() is not None else "no checkpoint in time"
    os.kill(p.pid, signal.SIGKILL)  # now inside epoch 2
    p.wait()
    state = torch.load(ck, weights_only=False)
    assert state["epoch"] == 0 and state["step_in_epoch"] == 6  # epoch 1 was complete
    assert not (out / "model.pt").exists()
    r = _run_train(["--out", str(out), "--resume"], env)
    log_r = r.communicate(timeout=200)[0]
    assert r.returncode == 0, log_r
    assert "resumed from" in log_r and "at epoch 1" in log_r
    log_ref = ref.communicate(timeout=200)[0]
    assert ref.returncode == 0, log_ref
    a, _ = load_model(out / "model.pt")
    b, _ = load_model(tmp_path / "ref" / "model.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 19))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["mgda", "aligned_ub"])
def test_torchrun_two_cpu_processes(method, tiny_scene, tmp_path):
    """Distributed data parallel with torchrun, 2 CPU processes (gloo)."""
    out = tmp_path / method
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "reloc_train.train", "--data", str(tiny_scene), "--out", str(out),
            "--method", method, "--epochs", "1", "--device", "cpu"]
    for s in TINY + ["run.max_steps_per_epoch=3"]:
        args += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    model, info = load_model(out / "model.pt")
    assert info.meta["world_size"] == 2 and info.meta["mtl_method"] == method
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 3 and all(np.isfinite(float(r["weight_t"])) for r in rows)


def _table3(tmp_path, *args):
    out = tmp_path / "table3.md"
    r = subprocess.run([sys.executable, "-m", "reloc_train.experiments.table3", *args, "--batch", "2", "--steps", "2",
                        "--warmup", "1", "--repeats", "1", "--device", "cpu", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line}
    return rows, json.loads(out.with_suffix(".json").read_text()), out.read_text()


def test_table3_benchmark_command(tmp_path):
    """The per-method cost benchmark runs each method in a child process and reports ratios."""
    rows, data, _ = _table3(tmp_path, "--config", "config/train.yaml", "--methods", "uniform,mgda,aligned_ub",
                            "--arch", "resnet18", "--size", "32", "43")
    assert rows["uniform"][3] == "1.00x"
    # encoder backward passes: T for theta-level MGDA, one for the Z-level and loss-level methods
    assert rows["mgda"][0] == "2" and rows["aligned_ub"][0] == "1" and rows["uniform"][0] == "1"
    assert rows["aligned_ub"][1] == "2"  # two head-only passes for the Z Gram
    assert all(r["step_s"] > 0 for r in data["results"])


def test_table3_benchmark_on_the_cpu_config_with_three_tasks(tmp_path):
    """Default config (train_cpu.yaml): Lite0 with frozen, cached stages and retrieval as a
    third task, so theta-level MGDA backpropagates three times."""
    rows, data, md = _table3(tmp_path, "--methods", "uniform,mgda", "--size", "64", "80")
    assert rows["mgda"][0] == "3" and rows["uniform"][0] == "1"
    assert data["config"]["model"]["tasks"] == ["t", "q", "r"] and data["config"]["model"]["freeze_stages"] == 6
    assert "efficientnet_lite0 at 64x80, first 6 encoder stages frozen (cached inputs), tasks t+q+r" in md


def test_sevenscenes_protocol_on_the_stairs_sample(copy_sample, tmp_path):
    """The paper's protocol command: checks the root, trains on the official train split,
    evaluates every test frame and writes the Table-4 layout with per-scene medians."""
    from reloc_train import sevenscenes

    root = tmp_path / "7scenes"
    scene = copy_sample(root / "stairs")
    out = tmp_path / "runs"
    # all seven scenes are expected by default: the sample holds one, and nothing trains
    assert sevenscenes.main(["--data", str(root), "--out", str(out)]) == 2
    assert not out.exists()
    tiny = [f"--set={s}" for s in TINY + ["optim.epochs=1", "data.pairs.min_distance_m=0", "run.device=cpu",
                                          "eval.max_frames=null"]]
    assert sevenscenes.main(["--data", str(root), "--out", str(out), "--scenes", "stairs", "--methods", "uniform",
                             *tiny]) == 0
    info = load_model(out / "uniform" / "seed0" / "model.pt", "cpu")[1]
    assert info.meta["training_data"]["scenes"] == ["stairs"]
    rows = list(csv.DictReader(open(out / "report" / "table4.csv")))
    cell = {(r["variant"], r["method"], r["scene"]): r for r in rows}
    top1 = cell[("retrieval", "uniform", "stairs")]
    assert np.isfinite(float(top1["median_t_m"])) and top1["seeds"] == "1"
    assert cell[("retrieval", "uniform", "mean")]["median_t_m"] == top1["median_t_m"]
    per_run = list(csv.DictReader(open(out / "report" / "per_run.csv")))
    assert len(per_run) == 1 and per_run[0]["scene"] == "stairs"
    md = (out / "report" / "table4.md").read_text()
    assert "| Uniform | " in md and "recall@5" in md
    # a split that names a missing sequence is refused before training, naming the folder
    (scene / "TestSplit.txt").write_text("sequence9\n")
    assert sevenscenes.main(["--data", str(root), "--out", str(tmp_path / "r2"), "--scenes", "stairs"]) == 2
    assert not (tmp_path / "r2").exists()


def test_table4_aggregates_seeds_ratios_recalls_and_sentences():
    from reloc_train.evaluate import aggregate, method_sentences, table4_markdown

    def run(method, t, r, rec5):
        s = {"median_t_m": t, "median_r_deg": r, "retrieval_median_t_m": 0.5, "retrieval_median_r_deg": 20.0,
             "recall_at_1": rec5 - 0.1, "recall_at_5": rec5, "oracle_recall": 0.95}
        return {"run": method, "method": method, "seed": 0, "scenes": {"a": s, "b": dict(s, median_t_m=t / 2)}}

    rows = [run("uniform", 0.4, 10.0, 0.80), run("uniform", 0.2, 10.0, 0.90), run("mgda", 0.16, 12.0, 0.70)]
    methods, scenes, table = aggregate(rows)
    assert methods == ["uniform", "mgda", "retrieval-only"] and scenes == ["a", "b"]
    assert table["uniform"]["a"]["t"] == pytest.approx(0.3) and table["uniform"]["a"]["n"] == 2
    assert table["uniform"]["mean"]["t"] == pytest.approx((0.3 + 0.15) / 2)
    assert table["mgda"]["mean"]["R_t"] == pytest.approx(1 - 0.12 / 0.225)
    assert table["mgda"]["mean"]["R_r"] == pytest.approx(1 - 12 / 10)
    assert table["uniform"]["mean"]["recall_at_5"] == pytest.approx(0.85)
    (line,) = method_sentences(methods, table)
    assert line.startswith("- **MGDA**: translation 0.120 m (-47%, better than Uniform's 0.225 m)")
    assert "rotation 12.00° (+20%, worse than" in line and "recall@5 70.0% (-15.0 points)" in line
    md = table4_markdown(methods, scenes, table, "T", "note")
    assert "| MGDA | 0.160 m / 12.00° | 0.080 m / 12.00° | **0.120 m / 12.00°** | +0.47 | -0.20 | 60.0% | 70.0% | 1 |" \
        in md and "oracle recall (the map has such a frame) is 95.0%" in md


def test_recall_command_scores_frozen_gem_against_the_oracle(tiny_scene, tmp_path):
    from reloc_ros.data.coverage import coverage
    from reloc_ros.data.sevenscenes import Scene
    from reloc_train import recall

    assert recall.main(["--data", str(tiny_scene), "--frozen", "efficientnet_lite0", "--size", "48", "64",
                        "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "recall.json").read_text())
    (res,) = data["results"].values()
    r = res[Scene(tiny_scene).name]
    assert 0 <= r["recall_at_1"] <= r["recall_at_5"] <= r["recall_at_10"] <= r["oracle_recall"] <= 1
    sc = Scene(tiny_scene)
    cov = coverage(sc.poses(sc.frames("train")), sc.poses(sc.frames("test")))
    assert r["oracle_recall"] == pytest.approx(cov.within_50cm_30deg)
    assert "| oracle (a map frame within 0.5 m and 30° exists) |" in (tmp_path / "recall.md").read_text()


def test_every_training_config_file_loads():
    """Each config/train*.yaml loads over the defaults (a typo in a shipped recipe is caught here)."""
    files = sorted((Path(__file__).resolve().parents[1] / "config").glob("train*.yaml"))
    assert len(files) >= 4
    for f in files:
        load_config([f])
    cfg = load_config([f for f in files if f.name in ("train_cpu.yaml", "train_rooms52.yaml")])
    assert cfg.model.arch == "efficientnet_lite0" and cfg.data.augment.p == 0.5
