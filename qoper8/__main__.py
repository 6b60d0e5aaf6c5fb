"""``python -m qoper8`` is the ``qoper8`` command."""

from __future__ import annotations

import sys

from ._daemon.cli import main

sys.exit(main())
