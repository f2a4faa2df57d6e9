"""Entry point of the Locust child process: install the recorder, then run Locust's own main.

Run as `python -m chaoslib_ext.load.child <locust options>`. Locust is never imported into the
runner itself, because importing it monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import os
import sys

import locust.main

from .protocol import FD_VARIABLE
from .recorder import install


def main() -> None:
    install(int(os.environ[FD_VARIABLE]))
    sys.argv = ["locust", *sys.argv[1:]]
    locust.main.main()


if __name__ == "__main__":
    main()
