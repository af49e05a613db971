"""Allow ``python -m embstore``."""

import sys

from .cli import main

sys.exit(main())
