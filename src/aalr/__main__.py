"""`python -m aalr`: the command line."""

import sys

from aalr.cli import main

sys.exit(main())
