r"""Train DRO (:mod:`reloc_ros.core.dro`), the recurrent pose optimizer, offline.

    python -m reloc_train.dro --model run/model.pt --db run/db_dense.pt --out run/dro \
        [--steps 3000 --batch 8 --method uncertainty --resume]

*Data.* The queries are the database's own frames (the ``fit`` map). Each is aligned
against 3 of the 5 frames that retrieval ranks first among the **other** sequences of its
scene, so that a query never sees its own sequence, as a test query would not. The
encoder is frozen: the query's stage features are computed once and cached.

*Initial poses* are perturbed like the regression's real errors: the true pose moved by a
random direction and a log-normal distance (median ``--init-t``, 0.25 m, log-σ 0.6, at most
1 m) and rotated about a random axis by a log-normal angle (median ``--init-r``, 6°).
The fused poses of the benchmark have a median of 0.27 m / 6.2°.

*Supervision* (as in DRO and RAFT): the pose error after every iteration k of N,
weighted :math:`\gamma^{N-k}` (``--gamma`` 0.8, later iterations more):

.. math::  L_t = \sum_k \gamma^{N-k} \|c_k - c\|, \qquad L_r = \sum_k \gamma^{N-k} \angle(R_k^\top R)

*MTL.* :math:`L_t` and :math:`L_r` are two tasks of the MTL suite (``--method``, by name,
:func:`reloc_train.mtl.build_method`; Uncertainty by default). The encoder and the
regression heads are frozen, so DRO's tasks share no trainable parameter with the
regression's t and q tasks. What the two tasks share is DRO's own adaptation layers, input
encoder, hidden-state init and GRU, and with the default flow head the head too
(:meth:`~reloc_ros.core.dro.DRO.shared_parameters`); with ``--head direct`` the translation
and rotation heads are task-specific. Loss-level (uniform, uncertainty), θ-level (mgda, pcgrad, aligned, ...) and
layer-level (gradnorm: the GRU's last convolution) methods apply; the Z-level ones need one
shared representation read by every loss term, which a recurrence of N iterations does not
have, and are refused.

Outputs in ``--out``: ``dro.pt`` (:func:`reloc_ros.core.dro.save_dro`, tied to the model's
fingerprint), ``checkpoint.pt`` (resumable with ``--resume``), ``history.csv``, TensorBoard
logs in ``tb/``, and ``curves.png``. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.database import DatabaseError, FrameDatabase
from reloc_ros.core.device import resolve_device
from reloc_ros.core.dro import DRO, DROConfig, rotation_angle, save_dro, so3_exp
from reloc_ros.core.files import atomic_save, atomic_write, atomic_write_text, load_torch_file
from reloc_ros.core.model import load_model
from reloc_ros.core.model.file import ModelFileError
from reloc_ros.data.sevenscenes import Scene, SevenScenesError, read_color
from reloc_train.mtl import build_method
from reloc_train.mtl.engine import mtl_backward

log = logging.getLogger("reloc_train.dro")

__all__ = ["DROData", "prepare", "perturb", "dro_losses", "train", "main"]


@dataclass
class DROData:
    """Cached training (or validation) queries.

    Attributes:
        maps: per level, the queries' L2-normalised encoder maps ``(N, C, h, w)`` float16.
        K: per level, their intrinsics at the map's size ``(N, 3, 3)``.
        poses: ``(N, 4, 4)`` their true camera-to-world poses.
        refs: ``(N, R)`` database rows to align against (best first).
    """

    maps: list
    K: list
    poses: torch.Tensor
    refs: torch.Tensor

    def __len__(self) -> int:
        return len(self.poses)


def _seq(frame_id: str) -> str:
    return frame_id.split("/")[0]


@torch.no_grad()
def prepare(model, db: FrameDatabase, scenes: dict[str, Scene], split: str | None, levels: tuple[int, ...],
            n_refs: int = 5, device: torch.device | str = "cpu", progress: bool = True,
            own_sequence_gap: int = -1) -> DROData:
    """Encode queries and pick their reference frames.

    Args:
        model: the frozen relative-pose network (its encoder gives the stage maps).
        db: the database (with dense grids) the references come from.
        scenes: the database's scenes by name.
        split: None: the database's own frames, each referenced to other sequences of its
            scene; else a split of the scenes (e.g. 'calib') whose frames are referenced to
            the whole database of their scene.
        levels: the encoder stages to cache.
        n_refs: references per query, by retrieval rank.
        own_sequence_gap: -1: a database query's references come from other sequences only;
            G >= 1: also from its own sequence, at least G frames away (for maps whose
            sequences do not overlap, such as the unit tests' tiny scene).
    """
    rows_scene = db.scene_index.numpy()
    seqs = np.array([_seq(f) for f in db.frame_ids])
    num = np.array([int("".join(ch for ch in f.split("/")[-1] if ch.isdigit()) or 0) for f in db.frame_ids])
    items = []  # (scene index, color path, pose, own row or None)
    for k, s in enumerate(db.scenes):
        sc = scenes[s["name"]]
        if split is None:
            rows = np.flatnonzero(rows_scene == k)
            by_id = {fr.id: fr for fr in sc.frames("all")}
            for r in rows:
                fr = by_id[db.frame_ids[r]]
                items.append((k, fr.color_path, db.poses[r].numpy(), r))
        else:
            frames = sc.frames(split)
            for fr, T in zip(frames, sc.poses(frames)):
                items.append((k, fr.color_path, T, None))
    maps = {lvl: [] for lvl in levels}
    K = {lvl: [] for lvl in levels}
    refs = []
    desc_db = db.descriptors.float()
    for k, path, T, own_row in tqdm(items, desc="encode queries", disable=not progress, dynamic_ncols=True,
                                    leave=False):
        x = model.preprocess(torch.as_tensor(np.array(read_color(path))[None]).to(device))
        _, d, fm = model.encode_levels(x, levels)
        ok = rows_scene == k
        if own_row is not None:  # a database frame: not its own sequence (or not within the gap)
            other = seqs != seqs[own_row]
            ok &= other if own_sequence_gap < 0 else other | (np.abs(num - num[own_row]) >= own_sequence_gap)
        sim = (desc_db @ d[0].float().cpu()).numpy()
        sim[~ok] = -np.inf
        refs.append(np.argsort(-sim)[:n_refs])
        intr = Intrinsics.from_dict(db.scenes[k]["intrinsics"])
        for lvl in levels:
            m = F.normalize(fm[lvl][0].float(), dim=0)
            maps[lvl].append(m.half().cpu())
            K[lvl].append(torch.from_numpy(intr.scaled(m.shape[2], m.shape[1]).K).float())
    return DROData(maps=[torch.stack(maps[lvl]) for lvl in levels], K=[torch.stack(K[lvl]) for lvl in levels],
                   poses=torch.from_numpy(np.stack([it[2] for it in items])).double(),
                   refs=torch.from_numpy(np.stack(refs)).long())


def perturb(T_B44: torch.Tensor, gen: torch.Generator, median_t: float = 0.25, median_r_deg: float = 6.0,
            sigma: float = 0.6, max_t: float = 1.0, max_r_deg: float = 25.0) -> torch.Tensor:
    """Poses moved by a random direction and a log-normal distance (median ``median_t``) and
    rotated about a random axis by a log-normal angle (median ``median_r_deg``)."""
    B = len(T_B44)
    d = F.normalize(torch.randn(B, 3, generator=gen, dtype=T_B44.dtype), dim=1)
    a = F.normalize(torch.randn(B, 3, generator=gen, dtype=T_B44.dtype), dim=1)
    t = (median_t * torch.exp(sigma * torch.randn(B, 1, generator=gen, dtype=T_B44.dtype))).clamp(max=max_t)
    r = (np.radians(median_r_deg) * torch.exp(sigma * torch.randn(B, 1, generator=gen, dtype=T_B44.dtype))
         ).clamp(max=np.radians(max_r_deg))
    out = T_B44.clone()  # in map axes: c' = c + d t, R' = exp(a r) R
    out[:, :3, :3] = so3_exp(a * r) @ T_B44[:, :3, :3]
    out[:, :3, 3] = T_B44[:, :3, 3] + d * t
    return out


def dro_losses(poses: list[torch.Tensor], T_gt_B44: torch.Tensor, gamma: float) -> tuple[torch.Tensor, dict]:
    """``(2,)`` losses (translation m, rotation rad), each :math:`\\sum_k \\gamma^{N-k} e_k`
    normalised by :math:`\\sum_k \\gamma^{N-k}`, over iterations k = 1..N of ``poses``."""
    N = len(poses) - 1
    w = torch.tensor([gamma ** (N - k) for k in range(1, N + 1)], dtype=T_gt_B44.dtype)
    w = w / w.sum()
    et = torch.stack([(P[:, :3, 3] - T_gt_B44[:, :3, 3]).norm(dim=1).mean() for P in poses[1:]])
    er = torch.stack([rotation_angle(P[:, :3, :3].transpose(1, 2) @ T_gt_B44[:, :3, :3]).mean() for P in poses[1:]])
    return torch.stack([(w * et).sum(), (w * er).sum()]), {"t_first": float(et[0].detach()),
                                                          "t_last": float(et[-1].detach()),
                                                          "r_last_deg": float(np.degrees(float(er[-1].detach())))}


def batch(data: DROData, db: FrameDatabase, dro: DRO, idx: torch.Tensor, gen: torch.Generator | None,
          m: int) -> tuple:
    """The inputs of :meth:`DRO.forward` for queries ``idx``, with ``m`` references each
    (a random ``m`` of the stored ones when ``gen`` is given, else the first ``m``)."""
    if gen is not None:
        pick = torch.argsort(torch.rand(len(idx), data.refs.shape[1], generator=gen), 1)[:, :m]
        rows = torch.gather(data.refs[idx], 1, pick)
    else:
        rows = data.refs[idx, :m]
    q, K, xyz, feat = [], [], [], []
    for li in range(len(dro.cfg.levels)):
        q.append(dro.adapt(data.maps[li][idx].float(), li))
        K.append(data.K[li][idx])
        x, f = db.dense.grid(li, rows.flatten())
        xyz.append(x.reshape(len(idx), m, *x.shape[1:]))
        feat.append(dro.adapt_grid(f.reshape(len(idx), m, *f.shape[1:]), li))
    T_db = db.poses[rows.flatten()].float().reshape(len(idx), m, 4, 4)
    return q, K, xyz, feat, T_db


@torch.no_grad()
def evaluate(dro: DRO, data: DROData, db: FrameDatabase, T0: torch.Tensor, m: int, bs: int = 32) -> dict:
    """Median translation (m) and rotation (°) error after every iteration, from poses ``T0``."""
    dro.eval()
    et, er = [], []
    for a in range(0, len(data), bs):
        idx = torch.arange(a, min(len(data), a + bs))
        poses, _ = dro(T0[idx].float(), *batch(data, db, dro, idx, None, m))
        gt = data.poses[idx].float()
        et.append(torch.stack([(P[:, :3, 3] - gt[:, :3, 3]).norm(dim=1) for P in poses]))
        er.append(torch.stack([torch.rad2deg(rotation_angle(P[:, :3, :3].transpose(1, 2) @ gt[:, :3, :3]))
                               for P in poses]))
    et, er = torch.cat(et, 1).numpy(), torch.cat(er, 1).numpy()
    dro.train()
    return {"median_t": np.median(et, 1).tolist(), "median_r": np.median(er, 1).tolist(),
            "within_5cm_5deg": ((et <= 0.05) & (er <= 5)).mean(1).tolist()}


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib  # lazy: matplotlib (about 1 s) only for the curves at the end of train()

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    s = [h["step"] for h in history]
    ax[0].plot(s, [h["loss_t"] for h in history], label="L_t (m)")
    ax[0].plot(s, [h["loss_r"] for h in history], label="L_r (rad)")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].legend()
    v = [h for h in history if "val_t" in h]
    if v:
        ax[1].plot([h["step"] for h in v], [h["val_t"] for h in v], "o-", label="val median t (m)")
        ax[1].set_yscale("log")
        ax[1].set_xlabel("step")
        ax[1].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def train(args) -> dict:
    """Train DRO (the module docstring); returns the final validation numbers."""
    from torch.utils.tensorboard import SummaryWriter  # lazy: a train extra; prepare() and the losses go without it

    torch.manual_seed(args.seed)
    dev = resolve_device(args.device)
    model, info = load_model(args.model, dev)
    db = FrameDatabase.load(args.db)
    db.check_model(info, args.db)
    if db.dense is None:
        raise DatabaseError(args.db, "has no dense grids; build it with python -m reloc_ros.mapping.database build --dense")
    dcfg = db.dense.config
    chans = tuple(int(f.shape[-1]) for f in db.dense.feat)
    cfg = DROConfig(levels=dcfg.levels, in_channels=chans, dim=args.dim, hidden=args.hidden, motion=args.motion,
                    iterations=args.iterations, top_m=args.top_m, head=args.head)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = {s["name"]: Scene(s["root"]) for s in db.scenes}
    t0 = time.time()
    train_data = prepare(model, db, scenes, None, dcfg.levels, device=dev, own_sequence_gap=args.own_sequence_gap)
    val_data = prepare(model, db, scenes, args.val_split, dcfg.levels, device=dev) if args.val_split else None
    log.info("cached %d training queries%s in %.0f s", len(train_data),
             f" and {len(val_data)} validation queries ({args.val_split})" if val_data else "", time.time() - t0)
    del model
    dro = DRO(cfg)
    method = build_method(args.method, 2)
    if method.level == "z":
        raise ValueError(f"method {args.method!r} works on a shared representation Z, which DRO's recurrence "
                         "does not have; use a loss-, θ- or layer-level method")
    opt = torch.optim.AdamW([{"params": list(dro.parameters()), "lr": args.lr, "weight_decay": 1e-4},
                             *method.param_groups(args.lr)], lr=args.lr)
    # warm-up, then halving every --half-life steps: the rate at a step does not depend on --steps,
    # so a resumed run continues exactly as an uninterrupted one would
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 ** (s / args.half_life))
    step, history = 0, []
    ck = out / "checkpoint.pt"
    gen = torch.Generator().manual_seed(args.seed)
    if args.resume and ck.exists():
        s = load_torch_file(ck, ModelFileError, "DRO checkpoint")
        if s["config"] != cfg.as_dict():
            raise ModelFileError(ck, "was made with other DRO settings; use another --out or the same settings")
        dro.load_state_dict(s["dro"])
        method.load_state_dict(s["method"])
        opt.load_state_dict(s["opt"])
        sched.load_state_dict(s["sched"])
        gen.set_state(s["gen"])
        step, history = s["step"], s["history"]
        log.info("resumed from %s at step %d", ck, step)
    val_T0 = None
    if val_data is not None:
        val_T0 = perturb(val_data.poses, torch.Generator().manual_seed(12345), args.init_t, args.init_r)
    tb = SummaryWriter(str(out / "tb"), purge_step=step or None)
    atomic_write_text(out / "args.txt", "\n".join(f"{k}: {v}" for k, v in sorted(vars(args).items())) + "\n")
    dro.train()
    bar = tqdm(total=args.steps, initial=step, desc="dro", dynamic_ncols=True)
    last_val = {}

    def save_all():
        atomic_save({"config": cfg.as_dict(), "dro": dro.state_dict(), "method": method.state_dict(),
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(), "step": step,
                     "history": history}, ck)
        save_dro(out / "dro.pt", dro, info, {"steps": step, "method": args.method, "gamma": args.gamma,
                                            "init_t": args.init_t, "init_r_deg": args.init_r,
                                            "database": str(args.db), "val": last_val})

    while step < args.steps:
        idx = torch.randint(0, len(train_data), (args.batch,), generator=gen)
        T_gt = train_data.poses[idx]
        T0 = perturb(T_gt, gen, args.init_t, args.init_r).float()
        poses, _ = dro(T0, *batch(train_data, db, dro, idx, gen, cfg.top_m))
        losses, st = dro_losses(poses, T_gt.float(), args.gamma)
        opt.zero_grad(set_to_none=True)
        stats = mtl_backward(method, losses, shared_params=dro.shared_parameters(),
                             task_params=dro.task_parameters(), layer_params=list(dro.gru.q2.parameters()))
        torch.nn.utils.clip_grad_norm_(dro.parameters(), 1.0)
        opt.step()
        sched.step()
        method.after_step()
        step += 1
        rec = {"step": step, "loss_t": float(losses[0].detach()), "loss_r": float(losses[1].detach()), **st,
               "alpha_t": stats["alpha"][0], "alpha_r": stats["alpha"][1]}
        for k, v in rec.items():
            if k != "step":
                tb.add_scalar(f"train/{k}", v, step)
        bar.update(1)
        bar.set_postfix(t=f"{st['t_first']:.3f}->{st['t_last']:.3f}", r=f"{st['r_last_deg']:.2f}")
        if val_data is not None and (step % args.val_every == 0 or step == args.steps):
            last_val = evaluate(dro, val_data, db, val_T0, cfg.top_m)
            rec["val_t"], rec["val_r"] = last_val["median_t"][-1], last_val["median_r"][-1]
            tb.add_scalar("val/median_t", rec["val_t"], step)
            tb.add_scalar("val/median_r_deg", rec["val_r"], step)
            bar.write(f"step {step}: val median {last_val['median_t'][0]:.3f} m -> {rec['val_t']:.3f} m, "
                      f"{last_val['median_r'][0]:.2f} -> {rec['val_r']:.2f} deg, "
                      f"{100 * last_val['within_5cm_5deg'][-1]:.1f} % within 5 cm / 5 deg")
        history.append(rec)
        if step % args.save_every == 0 or step == args.steps:
            save_all()
    bar.close()
    tb.close()
    if not (out / "dro.pt").exists():
        save_all()
    buf = io.StringIO()
    keys = sorted({k for h in history for k in h}, key=lambda k: (k != "step", k))
    w = csv.DictWriter(buf, keys)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    if history:
        _plot(history, out / "curves.png")
    return last_val


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Train DRO, the recurrent pose optimizer (reloc_ros.core.dro)")
    ap.add_argument("--model", required=True, type=Path, help="the relative-pose model file (frozen)")
    ap.add_argument("--db", required=True, type=Path, help="a database built with --dense (the map)")
    ap.add_argument("--out", required=True, type=Path, help="run folder")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8, help="queries per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50, help="steps of linear learning-rate warm-up")
    ap.add_argument("--half-life", type=float, default=1000, help="the learning rate halves every this many steps")
    ap.add_argument("--method", default="uncertainty", help="MTL method over the t and r tasks (reloc_train.mtl)")
    ap.add_argument("--gamma", type=float, default=0.8, help="per-iteration loss weight gamma^(N-k)")
    ap.add_argument("--init-t", type=float, default=0.25, help="median initial position error (m)")
    ap.add_argument("--init-r", type=float, default=6.0, help="median initial rotation error (deg)")
    ap.add_argument("--iterations", type=int, default=DROConfig.iterations, help="GRU iterations per stage")
    ap.add_argument("--dim", type=int, default=DROConfig.dim)
    ap.add_argument("--hidden", type=int, default=DROConfig.hidden)
    ap.add_argument("--motion", type=int, default=DROConfig.motion)
    ap.add_argument("--head", default=DROConfig.head, choices=["flow", "direct"],
                    help="flow: per-pixel displacements solved through the projection Jacobian; direct: pooled vectors")
    ap.add_argument("--top-m", type=int, default=DROConfig.top_m)
    ap.add_argument("--own-sequence-gap", type=int, default=-1,
                    help="-1: references from other sequences only; G: also own-sequence frames G or more apart")
    ap.add_argument("--val-split", default="calib", help="queries to report on ('' for none)")
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except (DatabaseError, ModelFileError, SevenScenesError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
