"""reloc_sim: deterministic synthetic scenes in the 7-Scenes layout (see :mod:`reloc_sim.synthetic`).

Kept apart from the runtime package: it needs scikit-image (its photographs are the
textures), which nothing at run time does.
"""
