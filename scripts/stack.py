"""Launcher of `teststack` (up/down/status/env/agent) that keeps the repo root off the front of sys.path."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # appended: the stdlib's `operator` wins

from teststack.__main__ import main

sys.exit(main())
