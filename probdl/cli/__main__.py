"""``python -m probdl.cli``: the ``probdl`` command without its console script (torchrun)."""

import sys

from probdl.cli.main import main

sys.exit(main())
