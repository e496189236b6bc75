"""The benchmarks run as RESULTS.md writes them (`python benchmarks/<name>.py`) from a fresh clone, with no
PYTHONPATH: a benchmark that uses the test helpers imports `_checkout` (which puts the checkout's root on
sys.path) before its first `tests.` import. Six of them did not, and failed with "No module named 'tests'"."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_benchmarks_that_use_the_test_helpers_import_checkout_first():
    late = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        first_use = re.search(r"^\s*from tests\.", text, re.M)
        if first_use is None:
            continue
        checkout = re.search(r"^(import _checkout|from _checkout import)", text, re.M)
        if checkout is None or checkout.start() > first_use.start():
            late.append(path.name)
    assert not late, f"import _checkout before tests.support in: {late}"
