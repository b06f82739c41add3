"""``python -m orrb``: the same as the ``orrb`` command."""

import sys

from orrb.cli import main

if __name__ == "__main__":
    sys.exit(main())
