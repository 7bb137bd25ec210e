"""``python -m lockgate_sim``: the same as the ``lockgate-sim`` command."""

import sys

from lockgate_sim.cli import main

sys.exit(main())
