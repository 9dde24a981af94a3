"""``python -m portopt``: the same as the ``portopt`` command."""

import sys

from .cli import main

sys.exit(main())
