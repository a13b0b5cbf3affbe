"""Training recipes by name: how a scene gets its model (a registry of small configs).

    python -m reloc_train.recipes finetune --scene maps/my_run --out runs/my_run   # from the generic model
    python -m reloc_train.recipes per_scene --scene maps/my_run --out runs/my_run

    from reloc_train.recipes import RECIPES, scene_training_config
    cfg = scene_training_config(RECIPES["finetune"], scene_dir, out, init="models/generic/model.pt")

- ``generic``: no training at all; the shipped generic model (``models/generic/``) and a
  database of the scene are all a new scene needs.
- ``finetune``: the generic model trained further on the scene's training split; its last
  training sequence is held out and picks the epoch (the trainer's best-epoch rule), so no
  test frame chooses anything.
- ``per_scene``: the per-scene recipe from ImageNet weights (the demo's before the generic
  model: EfficientNet-Lite0 at 120x160, 7 of 9 stages frozen, 8 epochs, Aligned-MTL on Z).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from reloc_ros.core.model import ModelFileError, generic_model_path, read_model_file
from reloc_ros.data.sevenscenes import Scene, SevenScenesError
from reloc_train.config import ConfigError, TrainConfig, load_config
from reloc_train.train import Trainer

__all__ = ["Recipe", "RECIPES", "CONFIG_DIR", "GENERIC_MODEL", "scene_training_config", "main"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
#: The shipped generic model (``python -m reloc_train.ship``).
GENERIC_MODEL = generic_model_path()


@dataclass(frozen=True)
class Recipe:
    """Attributes:
        name: its name on the command line.
        trains: False: the given model is used as it is.
        configs: config files (in ``config/``) layered first.
        sets: ``--set`` overrides on top of them.
        init: start from the given model's weights (``model.init``) instead of ImageNet.
    """

    name: str
    trains: bool
    configs: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    init: bool = False


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("generic", trains=False),
    Recipe("finetune", trains=True, configs=("train_cpu.yaml",), init=True,
           sets=("optim.epochs=6", "optim.lr=3.0e-4", "model.freeze_stages=7", "eval.max_frames=100",
                 "mtl.method=uniform")),
    Recipe("per_scene", trains=True, configs=("train_cpu.yaml",),
           sets=("optim.epochs=8", "eval.max_frames=50", "model.freeze_stages=7", "mtl.method=aligned_ub")),
)}


def scene_training_config(recipe: Recipe, scene_dir: Path | str, out: Path | str, init: Path | str | None = None,
                          extra: list[str] | None = None, device: str = "auto") -> TrainConfig:
    """The training config of ``recipe`` on one scene: its training split is fitted, with the
    last training sequence held out to choose the epoch when the scene has more than one.

    Args:
        recipe: a trainable recipe.
        scene_dir: the scene folder (7-Scenes layout).
        out: the run folder.
        init: the model file to start from (``recipe.init``); its network settings are taken.
        extra: further ``key=value`` overrides.
        device: the training device.
    """
    if not recipe.trains:
        raise ValueError(f"recipe {recipe.name!r} does not train")
    held_out = bool(Scene(scene_dir).sequences("calib"))
    sets = list(recipe.sets) + [f"data.train_split={'fit' if held_out else 'train'}"] \
        + (["data.val_split=calib"] if held_out else []) + list(extra or [])
    if recipe.init:
        if init is None:
            raise ValueError(f"recipe {recipe.name!r} starts from a model: give one")
        net = read_model_file(init)["config"]
        sets += [f"model.{k}={_yaml(v)}" for k, v in net.items()
                 if k in ("arch", "input_size", "head_hidden", "dropout", "descriptor_dim", "pose_grid",
                          "pose_channels", "tasks", "pose_head")]
        sets.append(f"model.init={init}")
    cfg = load_config([CONFIG_DIR / c for c in recipe.configs], sets)
    cfg.data.root, cfg.run.out, cfg.run.device = str(scene_dir), str(out), device
    return cfg


def _yaml(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description="Train a scene's model by a named recipe")
    ap.add_argument("recipe", choices=[r for r, v in RECIPES.items() if v.trains])
    ap.add_argument("--scene", required=True, type=Path, help="the scene folder (7-Scenes layout, e.g. bag.to_map's)")
    ap.add_argument("--out", required=True, type=Path, help="the run folder")
    ap.add_argument("--model", type=Path, default=GENERIC_MODEL, help="finetune: the model to start from")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training overrides")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        r = RECIPES[args.recipe]
        cfg = scene_training_config(r, args.scene, args.out, init=args.model if r.init else None, extra=args.set,
                                    device=args.device)
        trainer = Trainer(cfg)
    except (ConfigError, ModelFileError, SevenScenesError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = trainer.fit()
    print(f"model: {res.get('model')} (epoch {res.get('best_epoch')} by the held-out sequence)")
    return 3 if trainer.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
