"""``python -m fuzz --seconds N [--harness client|backend] [--engine auto|atheris|hypothesis]``.

Without ``--harness`` every harness runs for N seconds, one after the other.
The engine is atheris when it can be imported (each harness then runs in a
child process, ``fuzz/libfuzzer.py``, because ``atheris.Fuzz()`` exits when
done), hypothesis otherwise. Exit status 0: no invariant broken; 1: a failing input was found
(and printed).
"""

from __future__ import annotations

import argparse
import sys

from fuzz.driver import HARNESSES, atheris_available, run_atheris, run_hypothesis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="budget per harness")
    parser.add_argument("--harness", choices=sorted(HARNESSES), action="append")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    args = parser.parse_args(argv)
    names = args.harness or list(HARNESSES)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "hypothesis"
    if engine == "atheris":
        status = 0
        for name in names:
            status = max(status, run_atheris(name, args.seconds))
        return 1 if status else 0
    for name in names:
        try:
            report = run_hypothesis(name, args.seconds)
        except Exception as error:  # noqa: BLE001 - report the falsifying input, then fail
            print(f"{name}: FAILED: {error}", file=sys.stderr, flush=True)
            return 1
        print(report, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
