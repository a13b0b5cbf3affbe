"""Deterministic synthetic scenes in the Microsoft 7-Scenes layout (the public interface).

The real 7-Scenes cannot be downloaded everywhere, so the demo, the tests and the
benchmarks of reloc_ros use rooms rendered here. A scene folder looks exactly like a
7-Scenes one (see :mod:`reloc_ros.data.sevenscenes`), with semantic labels besides; the
layout is described in :mod:`reloc_sim.generator`.

How a scene is made (each step in its module):

* **Config** (:mod:`reloc_sim.config`): :class:`SceneConfig` with :class:`SensorNoise`,
  named :data:`PRESETS`, YAML files.
* **Room** (:func:`make_room`, :mod:`reloc_sim.room`): an axis-aligned box room with
  furniture and wall decorations made of boxes (:mod:`reloc_sim.furniture`), every surface
  texture-mapped in world metres with a photograph bundled with scikit-image
  (:mod:`reloc_sim.textures`). The layout only depends on the layout seed, so ``synth_a``
  is always the same room.
* **Camera paths** (:func:`make_trajectory`, :mod:`reloc_sim.trajectory`): handheld-like
  walks of a shared tour of viewpoints over the free floor.
* **Images** (:func:`render_view`, :mod:`reloc_sim.renderer`): a vectorised numpy ray
  caster with shading, shadows and an RGB-D sensor model; colour and depth are registered.
* **Files** (:func:`generate_scene`, :func:`generate_dataset`, :mod:`reloc_sim.generator`):
  the frames, poses, splits, intrinsics, ``classes.yaml`` (:data:`CLASSES`) and the
  provenance file ``synthetic.yaml``, rendered by a pool of worker processes.

Conventions: world frame metres, z up, floor at z = 0, room centred on x = y = 0. Camera
frame as in 7-Scenes / OpenCV: x right, y down, z forward; a pose maps camera to world.

Determinism: every random choice comes from a seed sequence of the base seed, the layout
seed and the sequence / frame numbers (:mod:`reloc_sim.seeds`), so the same seed writes
byte-identical files whatever the number of worker processes.

Command line (also ``reloc_synth`` and ``python -m reloc_sim.synthetic``)::

    python -m reloc_sim --out DIR --preset tiny --scenes 2 --seed 0 --workers 2
"""

from __future__ import annotations

import sys

from reloc_sim.config import PRESETS, SceneConfig, SensorNoise, scene_configs
from reloc_sim.generator import GENERATOR_VERSION, PROVENANCE_FILE, generate_dataset, generate_scene, main
from reloc_sim.renderer import INVALID_DEPTH, render_view
from reloc_sim.room import CLASS_ID, CLASSES, Room, RoomGroup, make_room
from reloc_sim.textures import MATERIAL_TEXTURES, PICTURE_TEXTURES
from reloc_sim.trajectory import make_trajectory, preset_coverage, trajectories

__all__ = [
    "SensorNoise",
    "SceneConfig",
    "PRESETS",
    "INVALID_DEPTH",
    "PROVENANCE_FILE",
    "GENERATOR_VERSION",
    "CLASSES",
    "CLASS_ID",
    "MATERIAL_TEXTURES",
    "PICTURE_TEXTURES",
    "Room",
    "RoomGroup",
    "make_room",
    "make_trajectory",
    "trajectories",
    "preset_coverage",
    "render_view",
    "scene_configs",
    "generate_scene",
    "generate_dataset",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
