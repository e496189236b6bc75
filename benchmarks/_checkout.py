"""Imported first by each benchmark that uses the test helpers: puts the checkout's root on `sys.path`, so
that `tests.support` (the fake servers, the real-server helper) imports when a benchmark is run as
`python benchmarks/<name>.py` from a fresh clone, with no PYTHONPATH."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
