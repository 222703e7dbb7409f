"""``python -m bids_app`` is the same as the ``qsmapp`` command."""

import sys

from bids_app.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
