"""``python -m archivist`` is the ``archivist`` command."""

import sys

from .cli import main

sys.exit(main())
