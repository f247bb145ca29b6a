"""The README documents every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("auth", "dashboard", "data_access", "live", "pipeline")
READS = re.compile(r"""(?:env|environ)(?:\.get)?\(\s*f?["']([A-Z][A-Z0-9_]+)["']""")
# Read through a prefix (ALERT_<FIELD>) or only in tests' process plumbing.
PREFIXED = re.compile(r"ALERT_[A-Z_]+")


def variables_read() -> set[str]:
    files = [ROOT / "gunicorn.conf.py"]
    for package in PACKAGES:
        files.extend((ROOT / package).rglob("*.py"))
    found: set[str] = set()
    for path in files:
        found.update(READS.findall(path.read_text()))
    return found


def test_every_variable_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = sorted(
        name
        for name in variables_read()
        if name not in documented
        and not (PREFIXED.fullmatch(name) and "ALERT_<THRESHOLD>" in readme)
    )
    assert not missing, f"README lacks: {missing}"
    assert len(variables_read()) > 40  # the scan itself works
