"""The README documents every environment variable the code reads; no file names a document
that is not in the repository."""

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


# Text the project ships, searched for the Markdown files it names.
DOC_SOURCES = ("*.py", "*.sh", "*.md", "*.toml", "*.yaml", "*.yml", "Makefile", "Dockerfile")
MARKDOWN_NAME = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b")
SKIPPED_DIRS = {".git", ".venv", "node_modules", "var", "artifacts", "server_files"}


def test_every_markdown_file_a_source_names_is_in_the_repository():
    """A reader pointed at a document finds it here: the project stands alone."""
    named: dict[str, list[str]] = {}
    for pattern in DOC_SOURCES:
        for path in ROOT.rglob(pattern):
            if SKIPPED_DIRS & set(path.relative_to(ROOT).parts):
                continue
            for name in MARKDOWN_NAME.findall(path.read_text(errors="replace")):
                named.setdefault(name, []).append(str(path.relative_to(ROOT)))
    missing = {
        name: files
        for name, files in named.items()
        if not (ROOT / name).is_file() and not any(ROOT.rglob(Path(name).name))
    }
    assert not missing, f"documents named but not in the repository: {missing}"
    assert "README.md" in named  # the scan itself works
