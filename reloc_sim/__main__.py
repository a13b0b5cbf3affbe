"""``python -m reloc_sim --out DIR --preset demo``: see :func:`reloc_sim.synthetic.main`."""

import sys

from reloc_sim.synthetic import main

sys.exit(main())
