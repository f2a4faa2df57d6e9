"""`python -m chaoslib_ext` is the same as the `gameday` command."""

import sys

from chaoslib_ext.cli import main

sys.exit(main())
