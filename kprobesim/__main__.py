"""``python -m kprobesim``: the ``kprobesim`` command."""

import sys

from .cli import main

sys.exit(main())
