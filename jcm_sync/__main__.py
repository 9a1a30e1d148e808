"""``python -m jcm_sync``: the same entry point as the ``jcm-sync`` script."""

import sys

from jcm_sync.cli import main

sys.exit(main())
