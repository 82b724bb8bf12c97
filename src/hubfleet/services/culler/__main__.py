"""``python -m hubfleet.services.culler [options]``: see ``--help-all``."""

import sys

from .app import main

sys.exit(main())
