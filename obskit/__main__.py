"""``python -m obskit`` works like the ``obskit`` console script."""

import sys

from obskit.commands import main

if __name__ == "__main__":
    sys.exit(main())
