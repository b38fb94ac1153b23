"""The process libFuzzer runs a harness in: ``SANSPROXY_FUZZ_HARNESS=h2 python fuzz/libfuzzer.py``.

Started by :func:`fuzz.driver.run_atheris` and :func:`fuzz.driver.merge_atheris`
with libFuzzer's flags as its arguments; a merge runs it again for its inner
passes, with the same environment.
"""

from __future__ import annotations

import os
import sys

from fuzz.driver import HARNESS_VARIABLE, fuzz_main

if __name__ == "__main__":
    fuzz_main(os.environ[HARNESS_VARIABLE], sys.argv[1:])
