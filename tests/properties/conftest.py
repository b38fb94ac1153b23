"""Property suites: make ``tests.simnet`` and ``fuzz`` importable under every pytest import mode.

Profiles (``fast`` by default, ``deep`` on request) come from ``tests/conftest.py``
through ``HYPOTHESIS_PROFILE``; nothing here registers or loads one.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
