"""``python -m entrolab``: the same as the ``entrolab`` console script."""

import sys

from entrolab.cli import main

if __name__ == "__main__":
    sys.exit(main())
