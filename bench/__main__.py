"""Run the benchmarks, print one table, write the same figures as JSON.

python -m bench            quick mode (a few minutes on 2 cores)
python -m bench --full     larger data sizes, longer ramps and soak
python -m bench --only operators,memory
python -m bench --skip aws,browser
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
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
    parser.add_argument("--skip", default="", help="comma-separated section names to leave out")
    parser.add_argument("--json", default="bench/results/latest.json", help="where to write JSON")
    args = parser.parse_args(argv)

    wanted = [name for name in args.only.split(",") if name] or list(sections.SECTIONS)
    skipped = {name for name in args.skip.split(",") if name}
    unknown = (set(wanted) | skipped) - set(sections.SECTIONS)
    if unknown:
        parser.error(
            f"unknown sections: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sections.SECTIONS)})"
        )
    wanted = [name for name in wanted if name not in skipped]
    report = Report(mode="full" if args.full else "quick")
    report.context.update(
        command=shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        cpus=os.cpu_count(),
        load_average_at_start=round(os.getloadavg()[0], 2),
    )
    run_started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="mc-bench-")
    try:
        for name in wanted:
            started = time.perf_counter()
            print(f"== {name} ...", file=sys.stderr, flush=True)
            try:
                sections.SECTIONS[name](report, Path(scratch) / name, full=args.full)
            except Exception as exc:  # one broken section must not hide the others' figures
                report.add(name, "error", None, note=f"{type(exc).__name__}: {exc}")
            report.seconds[name] = round(time.perf_counter() - started, 1)
            print(f"   {report.seconds[name]:.1f} s", file=sys.stderr, flush=True)
    finally:
        _remove_later(scratch)
    report.context.update(
        total_seconds=round(time.perf_counter() - run_started, 1),
        load_average_at_end=round(os.getloadavg()[0], 2),
    )
    print(report.table())
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.as_dict(), indent=2))
    print(f"\nJSON: {out}")
    return 1 if report.has_errors() else 0


def _remove_later(folder: str) -> None:
    """Delete the scratch folder without waiting: a section may leave many files or large
    ones behind, and removing them must not hold back the table. ``rm`` runs detached at the
    lowest priority and stops when it is done."""
    subprocess.Popen(
        ["nice", "-n", "19", "rm", "-rf", "--one-file-system", folder],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    sys.exit(main())
