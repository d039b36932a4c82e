"""``python -m neuropod.cli``: the same as the ``neuropod`` console script."""

import sys

from neuropod.cli.main import main

sys.exit(main())
