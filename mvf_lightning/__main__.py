"""``python -m mvf_lightning``: see :mod:`mvf_lightning.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
