"""Simulation suites: make ``tests.simnet`` and ``tests.sim`` importable under every import mode.

Hypothesis profiles (``fast`` by default, ``deep`` on request) come from
``tests/conftest.py``; the state machine here scales its own example count
from the active profile.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
