"""``python -m lesionquant`` runs the CLI."""

import sys

from lesionquant.cli import main

sys.exit(main())
