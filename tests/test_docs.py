"""The README documents every environment variable the code reads; its configuration tables
are the ones the settings models render; no file names a document that is not in the
repository."""

from __future__ import annotations

import re
from pathlib import Path

from configuration.base import EnvSettings
from scripts import settings_doc

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
    # The scan itself works (settings models declare most variables; the scan sees the rest).
    assert READS.findall('os.environ.get("BIND")') == ["BIND"]


def declared_variables() -> set[str]:
    """Every environment variable a settings model declares."""
    return {
        variable
        for models in settings_doc.TABLES.values()
        for model in models
        for names in model.variables().values()
        for variable in names
    }


def settings_models(model: type[EnvSettings] = EnvSettings) -> set[type[EnvSettings]]:
    """Every settings model of the product (imported by scripts.settings_doc)."""
    found: set[type[EnvSettings]] = set()
    for subclass in model.__subclasses__():
        found |= {subclass, *settings_models(subclass)}
    return found


GENERATED_ROW = re.compile(r"^\| ((?:`[A-Z][A-Z0-9_]+`(?:, )?)+) \|", re.M)


def test_the_settings_tables_are_the_ones_the_models_render():
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.render(readme) == readme, "stale: run python -m scripts.settings_doc"
    assert settings_doc.marked_tables(readme) == set(settings_doc.TABLES)


def test_every_settings_model_has_a_table():
    tabled = {model for models in settings_doc.TABLES.values() for model in models}
    untabled = {
        model.__name__
        for model in settings_models()
        if model.variables() and settings_doc.own_fields(model) and model not in tabled
    }
    assert not untabled, f"models missing from scripts/settings_doc.py TABLES: {untabled}"


def test_every_variable_a_generated_table_lists_is_declared_by_a_model():
    readme = (ROOT / "README.md").read_text()
    listed = {
        name
        for body in settings_doc.SECTION.finditer(readme)
        for row in GENERATED_ROW.findall(body.group("body"))
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)
    }
    assert listed, "the generated tables were found"
    assert not listed - declared_variables(), "documented but declared by no model"


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
