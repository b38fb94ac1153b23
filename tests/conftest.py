"""Shared test setup: hypothesis profiles and, in a plain checkout, the import path.

Choose a hypothesis profile with the HYPOTHESIS_PROFILE environment variable: `fast` (the
default, for every run) or `deep` (thousands of examples per property, for a nightly or a hunt).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import settings

_ROOT = Path(__file__).resolve().parent.parent

# Let the tests run from a checkout where nothing is installed: the core lives at the top of
# the tree, the trio adapter under adapters/. An installed copy always wins.
for _name, _folder in (("sansproxy", _ROOT), ("sansproxy_io", _ROOT / "adapters")):
    if importlib.util.find_spec(_name) is None:
        sys.path.insert(0, str(_folder))

# No deadline: timings on a shared 2-core CI machine are noise, not a property of the code.
settings.register_profile("fast", max_examples=100, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
