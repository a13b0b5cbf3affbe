"""reloc_sim: deterministic synthetic scenes in the 7-Scenes layout.

Users import from :mod:`reloc_sim.synthetic`, which re-exports the public names of the
modules below; ``python -m reloc_sim`` runs its command line.

Modules, in dependency order:

* :mod:`reloc_sim.seeds`: the random streams (seed sequences of tags and seeds).
* :mod:`reloc_sim.procedural`: procedural texture families (wood, marble, tiles, ...).
* :mod:`reloc_sim.textures`: photographs and procedural patterns in a mip-mapped atlas; texture families.
* :mod:`reloc_sim.furniture`: furniture and decoration pieces, materials, placements.
* :mod:`reloc_sim.room`: the room model (ray casting, free floor) and its layout (``make_room``).
* :mod:`reloc_sim.config`: ``SceneConfig``, ``SensorNoise``, the presets, config files.
* :mod:`reloc_sim.renderer`: the numpy ray caster and the RGB-D sensor model.
* :mod:`reloc_sim.trajectory`: handheld-like camera paths.
* :mod:`reloc_sim.generator`: writing scenes (frames, labels, metadata) and the command line.
* :mod:`reloc_sim.synthetic`: the public interface (a facade over the modules above).
* :mod:`reloc_sim.family`: families of scenes split into training, validation and unseen test
  scenes (``python -m reloc_sim.family``).

Kept apart from the runtime package: it needs scikit-image (its photographs are the
textures), which nothing at run time does.
"""
