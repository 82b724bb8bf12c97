"""``python -m hubfleet.services.adminpage [options]``: see ``--help-all``."""

import sys

from .app import main

sys.exit(main())
