"""``python -m lightcol`` runs the ``lightcol`` command line."""

import sys

from lightcol.cli import main

sys.exit(main())
