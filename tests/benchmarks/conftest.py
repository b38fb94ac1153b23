"""The benchmark suite's tests import ``benchmarks`` from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent.parent
if str(_ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not installed
    sys.path.insert(0, str(_ROOT))
