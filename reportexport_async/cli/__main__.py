"""`python -m reportexport_async.cli`: the `reportexport` command."""

import sys

from . import main

sys.exit(main())
