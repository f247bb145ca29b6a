"""scripts/audit-deps.sh decides right in each case: no advisory source reachable (says so,
exit 0), a source that answers and finds a vulnerable pin (exit 1), and a clean lock (exit 0).

pip-audit is replaced by a small fake that plays each advisory source; the script under test
is the real one. A ``slow`` test runs it with the real pip-audit from PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.servers import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "audit-deps.sh"
FAKE_PIP_AUDIT = """\
import json, os, sys
args = sys.argv[1:]
requirements = open(args[args.index("-r") + 1]).read()
service = args[args.index("-s") + 1]
with open(os.environ["FAKE_AUDIT_CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
answers = os.environ["FAKE_AUDIT_SOURCES"].split(",")  # the services that answer
if service not in answers:
    print("requests.exceptions.ConnectionError: name resolution failed", file=sys.stderr)
    sys.exit(1)
canary = "werkzeug==2.0.0" in requirements
vulnerable = canary or os.environ.get("FAKE_AUDIT_LOCK") == "vulnerable"
report = {"dependencies": [{"name": "werkzeug", "version": "2.0.0",
          "vulns": [{"id": "PYSEC-2023-58", "fix_versions": ["2.2.3"]}] if vulnerable else []}]}
if "-o" in args:
    json.dump(report, open(args[args.index("-o") + 1], "w"))
found = "Found 1 known vulnerability in 1 package"
print(found if vulnerable else "No known vulnerabilities found")
sys.exit(1 if vulnerable else 0)
"""


def _run(tmp_path: Path, sources: str, lock: str = "clean", **env: str):
    fake = tmp_path / "pip-audit"
    fake.write_text(f"#!{sys.executable}\n{FAKE_PIP_AUDIT}")
    fake.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            **os.environ,
            "PIP_AUDIT": str(fake),
            "FAKE_AUDIT_CALLS": str(calls),
            "FAKE_AUDIT_SOURCES": sources,
            "FAKE_AUDIT_LOCK": lock,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, made


def test_no_reachable_source_says_so_and_passes(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, sources="", lock="vulnerable")
    assert done.returncode == 0, done.stderr
    assert "NO DEPENDENCY AUDIT PERFORMED" in done.stdout
    assert "'osv'" in done.stdout and "'pypi'" in done.stdout
    # Only the canary was tried, on each source; the lock was never audited.
    assert all("requirements.lock" not in " ".join(call) for call in calls)
    assert [call[call.index("-s") + 1] for call in calls] == ["osv", "pypi"]


def test_a_vulnerable_pin_fails_when_a_source_answers(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, sources="pypi", lock="vulnerable")
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr
    lock_call = calls[-1]
    assert lock_call[lock_call.index("-r") + 1] == "requirements.lock"
    assert "--require-hashes" in lock_call and lock_call[lock_call.index("-s") + 1] == "pypi"


def test_a_clean_lock_passes_on_the_first_source_that_answers(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, sources="osv,pypi", lock="clean", AUDIT_IGNORE_VULNS="X-1 X-2")
    assert done.returncode == 0, done.stderr
    assert "no known vulnerabilities in requirements.lock" in done.stdout
    assert len(calls) == 2  # the canary on osv, then the lock on osv
    assert calls[-1].count("--ignore-vuln") == 2


def test_a_source_that_skips_the_canary_counts_as_unreachable(tmp_path: Path) -> None:
    # A mirror without per-version pages: pip-audit reports "no known vulnerabilities".
    done, _ = _run(tmp_path, sources="pypi", lock="clean", AUDIT_CANARY="werkzeug==3.1.9")
    assert done.returncode == 0
    assert "NO DEPENDENCY AUDIT PERFORMED" in done.stdout


@pytest.mark.slow
def test_the_real_pip_audit_runs_and_reports_plainly(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "AUDIT_VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert (
        "NO DEPENDENCY AUDIT PERFORMED" in out
        or "no known vulnerabilities" in out
        or "FAILED: known-vulnerable pins" in out
    ), out[-2000:]
