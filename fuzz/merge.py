"""``python -m fuzz.merge HARNESS DIR...``: fold what fuzz runs found into the committed corpus.

libFuzzer's merge keeps, of the committed corpus and the given directories,
only the inputs that add coverage; the result replaces
``fuzz/corpus/HARNESS/``. Needs atheris.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from fuzz.driver import CORPUS, HARNESSES, merge_atheris


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.merge", description=__doc__)
    parser.add_argument("harness", choices=sorted(HARNESSES))
    parser.add_argument("sources", type=Path, nargs="+")
    args = parser.parse_args(argv)
    committed = CORPUS / args.harness
    sources = [*([committed] if committed.is_dir() else []), *args.sources]
    with tempfile.TemporaryDirectory(prefix="sansproxy-merge-") as tmp:
        into = Path(tmp) / "corpus"
        into.mkdir()
        status = merge_atheris(args.harness, into, sources)
        if status != 0:
            print(f"merge failed (exit {status}); {committed} is unchanged", file=sys.stderr)
            return 1
        shutil.rmtree(committed, ignore_errors=True)
        shutil.copytree(into, committed)
    kept = list(committed.iterdir())
    size = sum(path.stat().st_size for path in kept)
    print(f"{args.harness}: {len(kept)} inputs, {size / 1024:.0f} KiB in {committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
