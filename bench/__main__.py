"""Run the benchmarks, print one table, write the same figures as JSON.

python -m bench            quick mode (a few minutes on 2 cores)
python -m bench --full     larger data sizes
python -m bench --only storage,processing
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import sections
from bench.report import Report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--full", action="store_true", help="large data sizes (long)")
    parser.add_argument("--only", default="", help="comma-separated section names")
    parser.add_argument("--json", default="bench/results/latest.json", help="where to write JSON")
    args = parser.parse_args(argv)

    wanted = [name for name in args.only.split(",") if name] or list(sections.SECTIONS)
    unknown = set(wanted) - set(sections.SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    report = Report(mode="full" if args.full else "quick")
    with tempfile.TemporaryDirectory(prefix="mc-bench-") as scratch:
        for name in wanted:
            started = time.perf_counter()
            print(f"== {name} ...", file=sys.stderr, flush=True)
            try:
                sections.SECTIONS[name](report, Path(scratch) / name, full=args.full)
            except Exception as exc:  # one broken section must not hide the others' figures
                report.add(name, "error", None, note=f"{type(exc).__name__}: {exc}")
            print(f"   {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print(report.table())
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.as_dict(), indent=2))
    print(f"\nJSON: {out}")
    return 1 if report.has_errors() else 0


if __name__ == "__main__":
    sys.exit(main())
