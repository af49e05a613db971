"""``python -m embstore.cli``: the same as the ``embstore`` command."""

import sys

from . import main

sys.exit(main())
