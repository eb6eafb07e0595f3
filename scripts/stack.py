"""Launcher of `teststack` (up/down/status/env/agent) from any working directory."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: teststack is not installed

from teststack.__main__ import main

sys.exit(main())
