"""Train the Siamese relative-pose network with a multi-task-learning method.

    python -m reloc_train.train --data .cache/demo/synth_a --method mgda --out runs/mgda
    python -m reloc_train.train --config config/train_cpu.yaml --data DIR --set optim.lr=3e-4
    torchrun --nproc_per_node 4 -m reloc_train.train --data /data/7scenes --method aligned_ub
    python -m reloc_train.train --out runs/mgda --resume      # continue an interrupted run

Writes to ``run.out``: ``checkpoint.pt`` (atomic, every epoch and optionally every N
steps; with auxiliary tasks it also holds the decoder), ``model.pt`` (the self-describing
model file the node loads), ``config.yaml``,
``history.csv`` (per-step losses and task weights), ``metrics.json`` (validation per
epoch) and TensorBoard scalars under ``tb/``.

Validation, every epoch, on the validation scenes (``data.val_root``) or else on the
``val_split`` frames of the training scenes; never on test scenes. Its criterion is the mean
over the scenes of (top-1 median t / ``eval.criterion_t_m`` + median r /
``eval.criterion_r_deg``), over the same evenly spaced queries every epoch. ``model.pt`` holds
the epoch with the lowest criterion (its meta data: ``best_epoch``, ``criterion``), not the
last one. The run stops when a loss is not finite or the criterion exceeds
``eval.diverge_factor`` times its best, says so, still writes the best epoch, and exits
with status 3.

Distributed training (torchrun): every rank trains on its shard of the pairs. The per-task
gradients are reduced across ranks *before* the MTL method weighs them, so every rank
computes the same weights and applies the same update (see ``reloc_train.mtl.engine``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from reloc_ros.core.device import resolve_device
from reloc_ros.core.files import atomic_save, atomic_write_text
from reloc_ros.core.model import ModelFileError, RelPoseNet, load_model, save_model
from reloc_ros.data.sevenscenes import SevenScenesError, open_scenes
from reloc_train.auxiliary import AuxDecoder, AuxTargets, aux_losses, check_levels, default_levels, evaluate_aux
from reloc_train.config import ConfigError, TrainConfig, load_config, resume_mismatches
from reloc_train.dataset import FeatureStore, FrameSet, ImageStore, PairDataset
from reloc_train.losses import task_losses
from reloc_train.mtl import build_method
from reloc_train.mtl.engine import distributed_reducers, mtl_backward
from reloc_train.overlap import ViewOverlap
from reloc_train.pretrained import load_imagenet_weights
from reloc_train.validate import encode_store, subsample, validate

log = logging.getLogger("reloc_train")


# --------------------------------------------------------------------------- environment
def init_from_model(model: RelPoseNet, path: str | Path) -> str:
    """Copy every weight of the model file ``path`` into ``model`` (fine-tuning); returns the
    file and its fingerprint. Raises ConfigError when the file's network settings differ from
    the model's, naming those that do (a missing or corrupt file: ModelFileError)."""
    src, info = load_model(path, "cpu")
    mine, theirs = asdict(model.cfg), asdict(info.config)
    differ = [f"{k} {theirs[k]!r} (config: {mine[k]!r})" for k in mine if mine[k] != theirs.get(k)]
    if differ:
        raise ConfigError(f"model.init {path}: the file's network differs from the model section: "
                          + "; ".join(differ))
    model.load_state_dict(src.state_dict(), strict=True)
    log.info("all weights initialised from %s (fingerprint %s)", path, info.fingerprint[:12])
    return f"{path} (fingerprint {info.fingerprint[:12]})"


def init_distributed(device_name: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, local_rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --------------------------------------------------------------------------- optimizer
def build_optimizer(model: torch.nn.Module, method: torch.nn.Module, lr: float, weight_decay: float,
                    method_lr: float, decoder: torch.nn.Module | None = None) -> torch.optim.Adam:
    """Adam over the network (``lr``, ``weight_decay``), the auxiliary decoder if any (the
    same) and the MTL method's own parameters, in the groups the method asks for
    (:meth:`~reloc_train.mtl.base.Weighting.param_groups`: ``method_lr * lr_scale``, no
    weight decay)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decoder is not None:
        params += list(decoder.parameters())
    groups = [{"params": params, "lr": lr, "weight_decay": weight_decay, "name": "network"}]
    groups += method.param_groups(method_lr)
    return torch.optim.Adam(groups, lr=lr)


# --------------------------------------------------------------------------- trainer
def mtl_step(model: RelPoseNet, method, opt: torch.optim.Optimizer, x_a: torch.Tensor, x_b: torch.Tensor,
             target: dict, start: int = 0, extra: torch.Tensor | None = None, amp: bool = False,
             grad_clip: float = 0.0, reducers: dict | None = None, aux: tuple | None = None) -> dict:
    """One optimisation step: forward the pairs, the per-task losses, the MTL method's
    backward (:func:`reloc_train.mtl.engine.mtl_backward`), the optimiser step.

    With auxiliary tasks, the decoder runs on every input of the encoder pass (a, b, then
    extra) and their losses follow the network's in the task order. The shared
    representation of the Z-level methods is then Z = (the last feature map, the decoder's
    skips): the inputs of the heads and of the decoder. The skips enter the decoder through
    their own graph node, so that ∇_Z L of every task goes through the heads and the
    decoder only, as without auxiliary tasks (the pose tasks' gradient on a skip is 0: it
    reaches the skip's stage through the later stages, which are not Z).

    Args:
        model: the network, in train mode.
        method: the MTL weighting (:func:`reloc_train.mtl.build_method`).
        opt: optimiser over its parameter groups (:func:`build_optimizer`).
        x_a, x_b: the B pairs, entering the encoder at stage ``start`` (0: normalised images).
        target: ``t`` (B, 3), ``q`` (B, 4) and, with task "r", ``r``: (M, M) labels.
        extra: more inputs for the retrieval task only (hard negatives).
        amp: bf16 autocast (CUDA).
        grad_clip: clip the global gradient norm to this (0: off).
        reducers: the distributed gradient reducers (see ``distributed_reducers``).
        aux: ``(decoder, aux_tasks, aux_target)`` (:class:`reloc_train.auxiliary.AuxDecoder`,
            e.g. ``("seg", "depth")``, :meth:`~reloc_train.auxiliary.AuxTargets.batch` of the
            2B + E inputs) or None.

    Returns the engine's statistics (task weights, backward pass counts).
    """
    dev = x_a.device
    decoder = aux[0] if aux else None
    levels = decoder.levels if decoder is not None else ()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        pred, z, feats = model.forward_pair_levels(x_a, x_b, start, extra=extra, levels=levels)
        if decoder is not None:
            skips = {lv: f.view_as(f) for lv, f in feats.items()}  # the decoder's own graph node
            seg, inv = decoder(z, skips)
    losses = task_losses(pred, target, model.cfg.tasks)
    z_rep, task_params = z, model.task_parameters()
    if decoder is not None:
        losses = torch.cat([losses, torch.stack(aux_losses(aux[1], seg, inv, aux[2]))])
        z_rep, task_params = [z, *skips.values()], task_params + list(decoder.parameters())
    opt.zero_grad(set_to_none=True)
    stats = mtl_backward(method, losses, shared_params=model.shared_parameters(),
                         task_params=task_params, z=z_rep,
                         layer_params=model.encoder.last_shared_layer(), **(reducers or {}))
    if grad_clip > 0:
        params = list(model.parameters()) + (list(decoder.parameters()) if decoder is not None else [])
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    method.after_step()
    return stats


class Trainer:
    """One training run (one process of it, under torchrun).

    Args:
        cfg: the merged configuration (see config/train.yaml).
        resume: continue from ``run.out/checkpoint.pt`` when it exists.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        run, d, mc, o = cfg.run, cfg.data, cfg.model, cfg.optim
        self.rank, self.world, local_rank = init_distributed(run.device)
        self.device = resolve_device(run.device, local_rank if self.world > 1 else None)
        self.main = self.rank == 0
        self.out = Path(run.out)
        self.amp = bool(run.amp) and self.device.type == "cuda"
        seed_everything(run.seed + self.rank)

        if not d.root:
            raise ValueError("data.root is not set (--data DIR)")
        self.scenes = open_scenes(d.root, d.scenes)
        self.model_cfg = mc.model_config()
        size = self.model_cfg.input_size
        self.train_fs = FrameSet.from_scenes(self.scenes, d.train_split)
        # validation: the map and queries of separate validation scenes, or the training scenes' val_split
        self.val_scenes = open_scenes(d.val_root, d.val_scenes) if d.val_root else self.scenes
        self.val_db_fs = FrameSet.from_scenes(self.val_scenes, d.train_split) if d.val_root else self.train_fs
        self.val_fs = FrameSet.from_scenes(self.val_scenes, d.val_split)

        torch.manual_seed(run.seed)  # identical initial weights on every rank
        self.model = RelPoseNet(self.model_cfg)
        self.init_source = init_from_model(self.model, mc.init) if mc.init else \
            load_imagenet_weights(self.model, mc.pretrained)
        self.model.freeze_stages(mc.freeze_stages)
        self.model.to(self.device)
        if self.world > 1:
            for p in self.model.state_dict().values():
                dist.broadcast(p, 0)
        self.tasks = self.model_cfg.tasks
        train_store = self._store(ImageStore(self.train_fs, size, d.cache_limit_mb), d.augment)
        self.dataset = PairDataset(self.train_fs, train_store, d.pairs, seed=run.seed, rank=self.rank,
                                   world_size=self.world, augment=d.augment)
        self.val_store = self._store(ImageStore(self.val_fs, size, d.cache_limit_mb)) if self.main else None
        self.val_db_store = train_store
        if d.val_root and self.main:
            self.val_db_store = self._store(ImageStore(self.val_db_fs, size, d.cache_limit_mb))
        self.start = train_store.start  # the encoder stage the training inputs enter at
        self.overlap = None
        if "r" in self.tasks:
            r = cfg.retrieval
            t0 = time.time()
            self.overlap = ViewOverlap.of_frames(self.train_fs, r.max_distance_m, r.positive, r.negative,
                                                 r.positive_m, r.positive_deg)
            log.info("view overlap of %d training frames (%d pairs) in %.1f s", len(self.train_fs),
                     self.overlap.pairs_computed, time.time() - t0)
        self.aux_tasks = tuple(cfg.aux.tasks)
        self.decoder = self.aux_train = self.aux_val = None
        if self.aux_tasks:
            self._build_aux()
            self.tasks = self.tasks + self.aux_tasks
        self.method = build_method(cfg.mtl.method, len(self.tasks), **cfg.mtl.options)
        self.method.to(self.device)
        self.reducers = distributed_reducers(self.method)
        self.opt = build_optimizer(self.model, self.method, o.lr, o.weight_decay, o.method_lr, self.decoder)
        self.steps_per_epoch = self._steps_per_epoch()
        total = max(1, self.steps_per_epoch * o.epochs)
        cosine = o.schedule == "cosine"
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) if cosine else 1.0)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        # the best epoch by the validation criterion: its weights go into model.pt
        self.best: dict = {"criterion": math.inf, "epoch": None, "model": None, "eval": None, "aux": None}
        self.stopped = ""  # why the run stopped early ("" when it ran all its epochs)
        self.history: list[dict] = []
        self.metrics: list[dict] = []
        self.tb = None
        if resume:
            self._resume()
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", yaml.safe_dump(cfg.as_dict(), sort_keys=False))
            # lazy: tensorboard is a train extra; the demo imports this module and with --model goes without it
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tb"), purge_step=self.global_step or None)

    def _build_aux(self) -> None:
        """The auxiliary decoder (same initial weights on every rank) and its targets."""
        a, k = self.cfg.aux, self.cfg.model.freeze_stages
        n = self.model.encoder.num_stages
        levels = tuple(a.levels) or default_levels(self.model, k)
        try:
            check_levels(levels, k, n)
        except ValueError as e:
            raise ConfigError(f"aux.levels: {e} (model.freeze_stages is {k})") from None
        size = self.model_cfg.input_size
        probe = AuxDecoder.for_model(self.model, levels, 1, True, a.width, size)
        self.aux_train = AuxTargets(self.train_fs, probe.output_size, "seg" in self.aux_tasks,
                                    "depth" in self.aux_tasks)
        if "seg" in self.aux_tasks and not bool(self.aux_train.has_label.any()):
            raise ConfigError(f"aux.tasks has 'seg' but no training frame under {self.cfg.data.root} has a label "
                              "image (frame-XXXXXX.label.png and classes.yaml; real 7-Scenes has none)")
        if "depth" in self.aux_tasks and not bool(self.aux_train.has_depth.any()):
            raise ConfigError(f"aux.tasks has 'depth' but no training frame under {self.cfg.data.root} has depth")
        torch.manual_seed(self.cfg.run.seed + 1)
        self.decoder = AuxDecoder.for_model(self.model, levels, self.aux_train.num_classes, "depth" in self.aux_tasks,
                                            a.width, size).to(self.device)
        if self.world > 1:
            for p in self.decoder.state_dict().values():
                dist.broadcast(p, 0)
        if self.main:
            self.aux_val = AuxTargets(self.val_fs, probe.output_size, "seg" in self.aux_tasks,
                                      "depth" in self.aux_tasks)
            log.info("auxiliary tasks %s: decoder on stages %s + Z, output %dx%d, %d classes; %d of %d training "
                     "frames have labels, %d depth", "+".join(self.aux_tasks), list(levels), *probe.output_size,
                     self.aux_train.num_classes, int(self.aux_train.has_label.sum()), len(self.train_fs),
                     int(self.aux_train.has_depth.sum()))

    def _store(self, images: ImageStore, augment=None):
        """The training inputs: the images, or with frozen stages their cached output (with
        ``augment``: and that of augmented copies)."""
        k = self.cfg.model.freeze_stages
        if k > 0 and self.cfg.data.cache_features:
            return FeatureStore(self.model, images, k, self.device, augment=augment, seed=self.cfg.run.seed)
        return images

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return self.model.preprocess(x) if self.start == 0 else x.float()

    def mine_hard_negatives(self) -> np.ndarray | None:
        """A hard negative per training frame from the current descriptors (or None)."""
        if self.overlap is None or not self.cfg.retrieval.hard_negatives:
            return None
        _, desc = encode_store(self.model, self.dataset.store, np.arange(len(self.train_fs)), self.device)
        rng = np.random.default_rng([self.cfg.run.seed, self.epoch, 2])
        return self.overlap.hard_negatives(desc.cpu(), self.train_fs.scene_index, rng=rng)

    def _steps_per_epoch(self) -> int:
        n = len(self.dataset) // self.cfg.optim.batch_size
        cap = self.cfg.run.max_steps_per_epoch
        return min(n, cap) if cap else n

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        if not self.main:
            return
        atomic_save({
            "config": self.cfg.as_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "model": self.model.state_dict(),
            "aux_decoder": self.decoder.state_dict() if self.decoder is not None else None,
            "method": self.method.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "rng": rng_state(),
            "history": self.history, "metrics": self.metrics, "best": self.best,
        }, self.checkpoint_path())
        self._write_history()

    def _resume(self) -> None:
        path = self.checkpoint_path()
        if not path.is_file():
            log.warning("--resume: no checkpoint at %s, starting a new run", path)
            return
        ck = torch.load(path, map_location=self.device, weights_only=False)
        bad = resume_mismatches(ck["config"], self.cfg.as_dict())
        if bad:
            raise SystemExit(f"{path}: the checkpoint was made with another config; differs in: "
                             + "; ".join(bad))
        self.model.load_state_dict(ck["model"])
        if self.decoder is not None:
            self.decoder.load_state_dict(ck["aux_decoder"])
        self.method.load_state_dict(ck["method"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        self.epoch, self.step_in_epoch, self.global_step = ck["epoch"], ck["step_in_epoch"], ck["global_step"]
        self.history, self.metrics = ck["history"], ck["metrics"]
        self.best = ck.get("best", self.best)
        if self.step_in_epoch >= self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.global_step)

    def _write_history(self) -> None:
        if not self.history:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.history[0].keys()))
        w.writeheader()
        w.writerows(self.history)
        atomic_write_text(self.out / "history.csv", buf.getvalue())
        atomic_write_text(self.out / "metrics.json", json.dumps(self.metrics, indent=2))

    # -- one step ------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        xa, xb = self._input(batch["a"]), self._input(batch["b"])
        xh = self._input(batch["h"]) if "h" in batch else None
        target = {"t": batch["t"].to(self.device), "q": batch["q"].to(self.device)}
        if "r" in self.tasks:
            idx = batch["idx"]
            rows = torch.cat([idx[:, 0], idx[:, 1]] + ([idx[:, 2]] if xh is not None else [])).numpy()
            labels = self.overlap.labels(np.where(rows >= 0, rows, 0))
            labels[:, rows < 0] = 0  # no hard negative for that anchor: its slot is ignored
            labels[rows < 0, :] = 0
            target["r"] = labels
        aux = None
        if self.decoder is not None:
            idx = batch["idx"]
            rows = torch.cat([idx[:, 0], idx[:, 1]] + ([torch.where(idx[:, 2] >= 0, idx[:, 2], idx[:, 0])]
                                                       if xh is not None else [])).numpy()
            aux = (self.decoder, self.aux_tasks, self.aux_train.batch(rows, self.device))
        stats = mtl_step(self.model, self.method, self.opt, xa, xb, target, self.start, xh, self.amp,
                         self.cfg.optim.grad_clip, self.reducers, aux)
        self.sched.step()
        return stats

    # -- loop ----------------------------------------------------------------------------
    def fit(self) -> dict:
        o, run = self.cfg.optim, self.cfg.run
        bs, epochs = o.batch_size, o.epochs
        ck_every = run.checkpoint_every_steps
        if self.steps_per_epoch == 0:
            raise SystemExit(f"not enough training pairs ({len(self.dataset)}) for one batch of {bs}")
        if self.main:
            log.info("training %s on %d frames of %s (%d pairs/epoch/rank, %d steps/epoch, %d rank%s) on %s; "
                     "method %s; encoder init: %s", self.model_cfg.arch, len(self.train_fs),
                     ", ".join(s.name for s in self.scenes), len(self.dataset), self.steps_per_epoch,
                     self.world, "s" if self.world > 1 else "", self.device, self.method.name, self.init_source)
        while self.epoch < epochs:
            self.dataset.set_epoch(self.epoch, self.mine_hard_negatives())
            start = self.step_in_epoch
            sub = Subset(self.dataset, range(start * bs, self.steps_per_epoch * bs))
            loader = DataLoader(sub, batch_size=bs, shuffle=False, drop_last=True,
                                num_workers=run.workers, pin_memory=self.device.type == "cuda",
                                persistent_workers=False)
            bar = tqdm(loader, total=self.steps_per_epoch, initial=start, disable=not self.main,
                       desc=f"epoch {self.epoch + 1}/{epochs}", dynamic_ncols=True, leave=False)
            t0 = time.time()
            steps0, t_steps = self.step_in_epoch, 0.0
            for batch in bar:
                ts = time.perf_counter()
                stats = self.train_step(batch)
                t_steps += time.perf_counter() - ts
                self.step_in_epoch += 1
                self.global_step += 1
                if self.main:
                    self._log_step(stats, bar)
                if self._agree(self._non_finite(stats)):
                    break
                if ck_every and self.global_step % ck_every == 0 and self.step_in_epoch < self.steps_per_epoch:
                    self.save_checkpoint()
            bar.close()
            if self.stopped:
                break
            val = self.validate()
            if self.main:
                row = {"epoch": self.epoch + 1, "step": self.global_step, "seconds": round(time.time() - t0, 2),
                       "step_seconds": round(t_steps / max(1, self.step_in_epoch - steps0), 4), **val}
                self.metrics.append(row)
                log.info("epoch %d/%d: %s", self.epoch + 1, epochs,
                         ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
            diverged = self._agree(self._keep_best(val) if self.main else "")
            self.save_checkpoint()  # epoch complete (step_in_epoch == steps_per_epoch)
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            if diverged:
                break
        result = self.finish()
        if self.world > 1:
            dist.barrier()
        return result

    def _non_finite(self, stats: dict) -> str:
        """Why to stop after a step whose loss is not finite ("" when every loss is)."""
        bad = [n for n, v in zip(self.tasks, stats["losses"]) if not math.isfinite(float(v))]
        return (f"the loss of task {', '.join(bad)} is not finite at step {self.global_step} (epoch "
                f"{self.epoch + 1})") if bad else ""

    def _keep_best(self, val: dict) -> str:
        """Keep the weights of an epoch with a better validation criterion; returns why the run
        diverged ("" when it did not): a criterion over ``eval.diverge_factor`` times the best."""
        c = val["val_criterion"]
        if not getattr(self, "last_eval", {}).get("scenes"):  # nothing to validate on: the last epoch is kept
            log.warning("no validation query (split %r of %s): model.pt will be the last epoch",
                        self.cfg.data.val_split, ", ".join(s.name for s in self.val_scenes))
            return ""
        if c < self.best["criterion"]:
            self.best = {"criterion": c, "epoch": self.epoch + 1, "eval": getattr(self, "last_eval", None),
                         "aux": getattr(self, "last_aux", None),
                         "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
            return ""
        f = self.cfg.eval.diverge_factor
        if not math.isfinite(c) or c > f * self.best["criterion"]:
            return (f"the validation criterion {c:.3g} at epoch {self.epoch + 1} is over {f:g} times the best, "
                    f"{self.best['criterion']:.3g} at epoch {self.best['epoch']}")
        return ""

    def _agree(self, reason: str) -> bool:
        """Whether to stop, the same on every rank (rank 0's reason, or any rank's non-finite
        loss, counts); sets :attr:`stopped`."""
        if self.world > 1:
            flag = torch.tensor([1.0 if reason else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() > 0 and not reason:
                reason = "another rank stopped the run"
        if reason:
            self.stopped = reason
            if self.main:
                log.error("training diverged: %s; stopping (model.pt: the best epoch, %s)", reason,
                          self.best["epoch"] if self.best["epoch"] is not None else "none")
        return bool(reason)

    def _log_step(self, stats: dict, bar) -> None:
        losses, weights = stats["losses"], stats["weights"]
        row = {"step": self.global_step, "epoch": self.epoch + 1, "lr": self.sched.get_last_lr()[0]}
        for name, l, w in zip(self.tasks, losses, weights):
            row[f"loss_{name}"], row[f"weight_{name}"] = float(l), float(w)
        for k, v in (stats.get("method_stats") or {}).items():
            if isinstance(v, (int, float)):
                row[f"mtl_{k}"] = float(v)
        self.history.append(row)
        if self.global_step % self.cfg.run.log_every == 0 or self.global_step == 1:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    group = k.split("_", 1)
                    tag = f"{group[0]}/{group[1]}" if len(group) == 2 else k
                    self.tb.add_scalar(tag, v, self.global_step)
        bar.set_postfix({f"L{n}": f"{float(l):.3f}" for n, l in zip(self.tasks, losses)}
                        | {f"w{n}": f"{float(w):.2f}" for n, w in zip(self.tasks, weights)})

    def validate(self) -> dict:
        if not self.main:
            return {}
        e = self.cfg.eval
        res = validate(self.model, self.val_db_fs, self.val_db_store, self.val_fs, self.val_store,
                       self.device, e.max_frames)
        m = res["mean"]
        crit = [s["median_t_m"] / e.criterion_t_m + s["median_r_deg"] / e.criterion_r_deg
                for s in res["scenes"].values()]
        res["criterion"] = float(np.mean(crit)) if crit else math.inf
        if not math.isfinite(res["criterion"]):
            res["criterion"] = math.inf
        val = {"val_criterion": res["criterion"], "val_median_t_m": m["median_t_m"], "val_median_r_deg": m["median_r_deg"],
               "val_retrieval_median_t_m": m["retrieval_median_t_m"],
               "val_retrieval_median_r_deg": m["retrieval_median_r_deg"],
               "val_recall_at_1": m["recall_at_1"], "val_recall_at_5": m["recall_at_5"],
               "val_oracle_recall": m["oracle_recall"]}
        if self.decoder is not None:
            rows = subsample(len(self.val_fs), self.cfg.eval.max_frames)
            aux = evaluate_aux(self.model, self.decoder, self.val_store, self.aux_val, rows, self.device)
            val.update({f"val_{k}": v for k, v in aux.items()})
            self.last_aux = aux
        for k, v in val.items():
            self.tb.add_scalar("val/" + k[4:], v, self.global_step)
        for scene, s in res["scenes"].items():
            self.tb.add_scalar(f"val_scene/{scene}/median_t_m", s["median_t_m"], self.global_step)
            self.tb.add_scalar(f"val_scene/{scene}/median_r_deg", s["median_r_deg"], self.global_step)
        self.last_eval = res
        return val

    def finish(self) -> dict:
        if not self.main:
            return {}
        self.tb.flush()
        d = self.cfg.data
        best = self.best
        if best["model"] is not None:  # the best epoch's weights, not the last's
            self.model.load_state_dict(best["model"])
        fp = save_model(self.out / "model.pt", self.model, meta={
            "mtl_method": self.method.name,
            "mtl_options": self.cfg.mtl.options,
            "training_data": {"root": str(d.root), "scenes": [s.name for s in self.scenes],
                              "split": d.train_split, "frames": len(self.train_fs)},
            "train_config": self.cfg.as_dict(),
            "encoder_init": self.init_source,
            "epochs": self.epoch, "steps": self.global_step, "world_size": self.world,
            "best_epoch": best["epoch"], "criterion": best["criterion"] if best["epoch"] else None,
            "criterion_definition": f"mean over validation scenes of median t / {self.cfg.eval.criterion_t_m:g} m "
                                    f"+ median r / {self.cfg.eval.criterion_r_deg:g} deg (top-1)",
            "validation_scenes": [s.name for s in self.val_scenes], "stopped": self.stopped or None,
            "validation": best["eval"] if best["epoch"] else getattr(self, "last_eval", None),
            # the decoder stays in checkpoint.pt: the node never runs it
            "aux_tasks": list(self.aux_tasks),
            "aux_levels": list(self.decoder.levels) if self.decoder is not None else [],
            "aux_validation": best["aux"] if best["epoch"] else getattr(self, "last_aux", None),
        })
        log.info("model written to %s (fingerprint %s): epoch %s of %d, validation criterion %s", self.out / "model.pt",
                 fp[:12], best["epoch"], self.epoch, f"{best['criterion']:.4g}" if best["epoch"] else "n/a")
        return {"model": str(self.out / "model.pt"), "fingerprint": fp, "best_epoch": best["epoch"],
                "criterion": best["criterion"], "stopped": self.stopped,
                "validation": best["eval"] if best["epoch"] else getattr(self, "last_eval", None)}


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train the Siamese relative-pose network (reloc_ros)",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--config", action="append", default=[], help="YAML file(s) over config/train.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=3e-4")
    ap.add_argument("--data", help="scene folder or dataset root (data.root)")
    ap.add_argument("--method", help="MTL method (mtl.method)")
    ap.add_argument("--out", help="run folder (run.out)")
    ap.add_argument("--seed", type=int, help="run.seed")
    ap.add_argument("--epochs", type=int, help="optim.epochs")
    ap.add_argument("--device", help="auto | cuda | cpu (run.device)")
    ap.add_argument("--resume", action="store_true", help="continue from run.out/checkpoint.pt")
    return ap


def config_from_args(args) -> TrainConfig:
    """Defaults < --config files < --set < flags. ``--out X --resume`` with no --config
    takes the run's own saved config.yaml as the base, so a bare resume needs no flags."""
    files = list(args.config)
    if args.resume and not files:
        out = Path(args.out) if args.out else Path(load_config([], args.set).run.out)
        if (out / "config.yaml").is_file():
            files = [out / "config.yaml"]
    cfg = load_config(files, args.set)
    flags = {"data": {"root": args.data}, "mtl": {"method": args.method},
             "run": {"out": args.out, "seed": args.seed, "device": args.device}, "optim": {"epochs": args.epochs}}
    for section, values in flags.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            setattr(cfg, section, replace(getattr(cfg, section), **values))
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        trainer = Trainer(cfg, resume=args.resume)
    except (ConfigError, ModelFileError, SevenScenesError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = trainer.fit()
    if trainer.main and result.get("validation"):
        m = result["validation"]["mean"]
        print(f"validation of the best epoch ({result['best_epoch']}): median {m['median_t_m']:.3f} m / "
              f"{m['median_r_deg']:.2f} deg (retrieval only {m['retrieval_median_t_m']:.3f} m / "
              f"{m['retrieval_median_r_deg']:.2f} deg); model: {result['model']}")
    if trainer.main and trainer.stopped:
        print(f"training diverged: {trainer.stopped}; model.pt holds the best epoch "
              f"({result.get('best_epoch') or 'none: no epoch was validated'})", file=sys.stderr)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 3 if trainer.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
