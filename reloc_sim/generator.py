"""Writing synthetic scenes in the 7-Scenes layout, and the command line.

A scene folder looks exactly like a 7-Scenes one (see :mod:`reloc_ros.data.sevenscenes`),
with the semantic labels and the generator's metadata besides::

    synth_a/
      TrainSplit.txt  TestSplit.txt      "sequenceN" lines, CRLF
      intrinsics.yaml                    colour = depth intrinsics, depth_registered: true
      synthetic.yaml                     how the scene was made (config, seed, version)
      classes.yaml                       the class names of the label ids (CLASSES)
      seq-01/frame-000000.color.png      8-bit RGB
             frame-000000.depth.png      16-bit millimetres, 65535 = no measurement
             frame-000000.label.png      8-bit semantic class ids, exact from the ray caster
             frame-000000.pose.txt       4x4 camera-to-world, as 7-Scenes prints it

The frames of all scenes of a run are rendered by one pool of worker processes; the files do
not depend on their number. The split files are written last, so that a scene interrupted
half-way does not open as a scene.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml
from PIL import Image

from reloc_ros.data.sevenscenes import (
    CLASSES_FILE,
    INTRINSICS_FILE,
    SCENE_FORMAT_VERSION,
    SPLIT_FILES,
    format_pose_text,
    format_split_text,
    parse_pose_text,
)
from reloc_sim.config import PRESETS, SceneConfig, load_config_file, scene_configs
from reloc_sim.renderer import apply_sensor, render_clean
from reloc_sim.room import CLASSES
from reloc_sim.seeds import TAG_FRAME, make_rng
from reloc_sim.trajectory import make_trajectory

#: File in each generated scene folder that records how it was made.
PROVENANCE_FILE = "synthetic.yaml"
#: Bumped whenever the same config and seed would give different files.
GENERATOR_VERSION = 2


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Make processes started inside use one BLAS / OpenMP thread each."""
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _frame_stem(scene_dir: Path, seq: int, idx: int) -> Path:
    """``scene_dir/seq-SS/frame-IIIIII``: the files of frame ``idx`` of sequence ``seq`` add
    their suffix (``.color.png`` ...) to it."""
    return scene_dir / f"seq-{seq:02d}" / f"frame-{idx:06d}"


def _render_frame(task: tuple) -> tuple[int, int]:
    """Render and write one frame (runs in the worker processes).

    Args:
        task: (config, base seed, scene folder, sequence, frame index, 4x4 pose).
    Returns:
        (sequence, frame index) of the frame written.
    """
    config, seed, scene_dir, seq, idx, pose = task
    room = config.room_of_sequence(seq)
    rng = make_rng(TAG_FRAME, seed, config.layout_seed, seq, idx)
    rgb, z, cos_inc, label = render_clean(room, pose, config.intrinsics, config.supersample, config.shadows,
                                           labels=True)
    rgb8, mm = apply_sensor(rgb, z, cos_inc, config.sensor, rng)
    stem = _frame_stem(Path(scene_dir), seq, idx)
    # Fast zlib level: a third of the encoding time of the default for 10 % larger files.
    Image.fromarray(rgb8).save(stem.with_name(stem.name + ".color.png"), format="PNG", compress_level=1)
    Image.fromarray(mm).save(stem.with_name(stem.name + ".depth.png"), format="PNG", compress_level=1)
    Image.fromarray(label).save(stem.with_name(stem.name + ".label.png"), format="PNG", compress_level=1)
    stem.with_name(stem.name + ".pose.txt").write_bytes(format_pose_text(pose).encode("ascii"))
    return seq, idx


def _prepare_scene_dir(scene_dir: Path) -> None:
    """Empty a previous synthetic scene folder ``scene_dir`` (only one that the generator wrote)
    or create it."""
    if scene_dir.exists():
        if not scene_dir.is_dir():
            raise FileExistsError(f"{scene_dir}: exists and is not a folder")
        if any(scene_dir.iterdir()):
            if not (scene_dir / PROVENANCE_FILE).is_file():
                raise FileExistsError(
                    f"{scene_dir}: folder exists and was not written by the synthetic generator "
                    f"(no {PROVENANCE_FILE}); refusing to overwrite it"
                )
            shutil.rmtree(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)


def is_complete_scene(scene_dir: Path, config: SceneConfig, seed: int) -> bool:
    """Whether ``scene_dir`` holds a complete scene (its split files exist: they are written
    last) made by this generator version from this config and seed."""
    if not all((scene_dir / f).is_file() for f in SPLIT_FILES.values()):
        return False
    try:
        prov = yaml.safe_load((scene_dir / PROVENANCE_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (isinstance(prov, dict) and prov.get("version") == GENERATOR_VERSION and prov.get("seed") == int(seed)
            and prov.get("config") == config.as_dict())


def _write_scene_files(scene_dir: Path, config: SceneConfig, seed: int) -> None:
    """Intrinsics, classes and provenance files (the split files come last, once the frames exist).

    Args:
        scene_dir: the scene folder.
        config: the scene's config.
        seed: the base seed.
    """
    cam = config.intrinsics.as_dict()
    intr = {"format_version": SCENE_FORMAT_VERSION, "color": cam, "depth": dict(cam), "depth_registered": True}
    (scene_dir / INTRINSICS_FILE).write_text(yaml.safe_dump(intr, sort_keys=False), encoding="ascii")
    (scene_dir / CLASSES_FILE).write_text(yaml.safe_dump(
        {"format": "uint8 class ids in frame-XXXXXX.label.png", "classes": list(CLASSES)}, sort_keys=False),
        encoding="ascii")
    prov = {
        "generator": "reloc_sim.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "room": config.room().describe(),
        "config": config.as_dict(),
    }
    (scene_dir / PROVENANCE_FILE).write_text(yaml.safe_dump(prov, sort_keys=False), encoding="ascii")


def _generate(
    out_root: Path, configs: list[SceneConfig], seed: int, workers: int, log: Callable[[str], None] | None
) -> list[Path]:
    """Write several scenes, rendering all frames with one pool of ``workers`` processes.

    Args:
        out_root: folder that receives the scene folders.
        configs: single-scene configs with distinct names.
        seed: base seed (>= 0).
        workers: rendering processes (1: render here).
        log: prints progress lines, or None.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"scene names must differ, got {names}")
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            # "spawn": fresh workers whatever threads the caller runs; leaving the block
            # terminates them (all their frames are written by then, or an error is raised).
            with _single_threaded_children():
                pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
        return [_generate_one(Path(out_root), config, seed, pool, log) for config in configs]


def _generate_one(out_root: Path, config: SceneConfig, seed: int, pool, log) -> Path:
    """Write one scene; frames are rendered by ``pool`` (or here when it is None).

    Args:
        out_root: folder that receives the scene folder ``config.name``.
        config: a single-scene config.
        seed: base seed (>= 0).
        pool: a :class:`multiprocessing.pool.Pool`, or None.
        log: prints progress lines, or None.
    """
    t_start = time.perf_counter()
    scene_dir = out_root / config.name
    _prepare_scene_dir(scene_dir)
    room = config.room()
    _write_scene_files(scene_dir, config, seed)
    if log:
        log(
            f"[{config.name}] {room.describe()}; {config.width}x{config.height}, "
            f"{config.train_seqs}+{config.test_seqs} sequences x {config.frames} frames"
        )
    split_of = {s: split for split, seqs in config.sequences.items() for s in seqs}
    tasks = []
    for seq in sorted(split_of):
        (scene_dir / f"seq-{seq:02d}").mkdir()
        poses = make_trajectory(room, config, seed, seq)
        for idx, T in enumerate(poses):
            # Render the pose exactly as written (8 significant digits).
            T = parse_pose_text(format_pose_text(T))
            tasks.append((config, int(seed), str(scene_dir), seq, idx, T))
    results = pool.imap(_render_frame, tasks, chunksize=4) if pool is not None else map(_render_frame, tasks)
    done = {s: 0 for s in split_of}
    count = 0
    for seq, _ in results:
        done[seq] += 1
        count += 1
        if done[seq] == config.frames and log:
            log(
                f"[{config.name}] seq-{seq:02d} ({split_of[seq]}): {config.frames} frames "
                f"[{count}/{len(tasks)}] {time.perf_counter() - t_start:.1f} s"
            )
    if count != len(tasks):
        raise RuntimeError(f"{scene_dir}: rendered {count} of {len(tasks)} frames")
    # Split files last: a scene interrupted half-way does not open as a scene.
    for split, fname in SPLIT_FILES.items():
        (scene_dir / fname).write_bytes(format_split_text(config.sequences[split]).encode("ascii"))
    return scene_dir


def generate_scene(
    out_root: Path | str,
    config: SceneConfig | str,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Render one synthetic scene in the 7-Scenes layout.

    Args:
        out_root: folder that receives the scene folder (created if needed).
        config: a :class:`SceneConfig` or a preset name; only its first scene is made.
        seed: base seed (>= 0); the same seed writes byte-identical files.
        workers: rendering processes (the output does not depend on it).
        progress: print a line per sequence.
    Returns:
        The scene folder ``out_root / config.name``. A previous synthetic scene there
        is replaced; any other existing non-empty folder raises ``FileExistsError``.
    """
    config = scene_configs(config)[0]
    return _generate(Path(out_root), [config], seed, workers, _print if progress else None)[0]


def generate_dataset(
    out_root: Path | str,
    configs_or_preset: SceneConfig | str | Sequence[SceneConfig],
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Render several scenes (``synth_a``, ``synth_b``, ...) into ``out_root``.

    Args:
        out_root: the dataset root folder.
        configs_or_preset: a preset name or a config (making ``config.scenes`` scenes), or
            a list of configs (each making its own scenes).
        seed: base seed (>= 0) shared by all scenes.
        workers: rendering processes (the output does not depend on it).
        progress: print a line per sequence.
    Returns:
        The scene folders, in order.
    """
    if isinstance(configs_or_preset, (SceneConfig, str)):
        configs = scene_configs(configs_or_preset)
    else:
        configs = [c for cfg in configs_or_preset for c in scene_configs(cfg)]
    return _generate(Path(out_root), configs, seed, workers, _print if progress else None)


def _print(msg: str) -> None:
    """Print a progress line at once."""
    print(msg, flush=True)

def _parser() -> argparse.ArgumentParser:
    """The command line's options."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_sim",
        description="Render deterministic synthetic scenes in the 7-Scenes layout.",
    )
    p.add_argument("--out", type=Path, help="dataset root folder (scenes go into sub-folders)")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="base config (default: demo)")
    p.add_argument("--config", type=Path, help="YAML file with SceneConfig fields overriding the preset")
    p.add_argument("--scenes", type=int, help="number of scenes (synth_a, synth_b, ...)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="rendering processes (default: all cores)"
    )
    p.add_argument("--width", type=int, help="image width")
    p.add_argument("--height", type=int, help="image height")
    p.add_argument("--frames", type=int, help="frames per sequence")
    p.add_argument("--train-seqs", type=int, help="training sequences per scene")
    p.add_argument("--test-seqs", type=int, help="test sequences per scene")
    p.add_argument("--supersample", type=int, help="colour samples per pixel along each axis")
    p.add_argument("--layout-seed", type=int, help="layout seed of the first scene")
    p.add_argument("--name", help="scene folder name (default: synth_<letter>)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p


def _config_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> SceneConfig:
    """The config that the command line asks for: the preset, then the config file, then the
    options over both.

    Args:
        p: the parser (a bad value exits through ``p.error``).
        args: the parsed options.
    """
    try:
        config = PRESETS[args.preset]
        if args.config is not None:
            config = load_config_file(args.config, config)
        overrides = {
            "scenes": args.scenes,
            "width": args.width,
            "height": args.height,
            "frames": args.frames,
            "train_seqs": args.train_seqs,
            "test_seqs": args.test_seqs,
            "supersample": args.supersample,
            "layout_seed": args.layout_seed,
            "name": args.name,
        }
        config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError, OSError, yaml.YAMLError) as e:
        p.error(str(e))
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_sim --out DIR --preset tiny ...``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    p = _parser()
    args = p.parse_args(argv)
    if args.list_presets:
        for name, c in PRESETS.items():
            print(
                f"{name:10s} {c.scenes} scene(s) x {c.train_seqs}+{c.test_seqs} sequences x {c.frames} frames, "
                f"{c.width}x{c.height}, supersample {c.supersample}"
            )
        return 0
    if args.out is None:
        p.error("--out is required")
    config = _config_of(p, args)
    t0 = time.perf_counter()
    dirs = generate_dataset(args.out, config, seed=args.seed, workers=args.workers, progress=not args.quiet)
    frames = config.total_frames * len(dirs)
    secs = time.perf_counter() - t0
    print(
        f"wrote {frames} frames in {len(dirs)} scene(s) ({', '.join(d.name for d in dirs)}) to {args.out} "
        f"in {secs:.1f} s ({1000 * secs / max(frames, 1):.0f} ms/frame, {args.workers} worker(s))"
    )
    return 0
