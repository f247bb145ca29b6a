"""Every setting is declared once, by a settings model, and the README agrees with the models
both ways: every variable a model declares is documented, every variable the README names is
declared, and its configuration tables are the ones the models render. The product reads no
variable outside a model. No file names a document that is not in the repository."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from configuration.base import EnvSettings
from scripts import settings_doc

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("auth", "configuration", "dashboard", "data_access", "live", "pipeline")
# Loaded by gunicorn, not imported as modules of a package.
ENTRY_FILES = ("gunicorn.conf.py", "wsgi.py")
# Upper-case names the README shows that are not environment variables of the product.
NOT_SETTINGS = {"AWS_LOCAL_ARGS": "a make variable of `make run-aws-local`"}
# How the README writes an environment variable: `NAME` or `NAME=value`, with an underscore
# (single words such as `GET` or `UTC` are not variables).
README_VARIABLE = re.compile(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])(?:`|=)")
# A variable read by name from the environment or from a mapping of it, e.g.
# os.environ.get("X"), os.getenv("X"), environ["X"], env.get("X"), env["X"].
READ_BY_NAME = re.compile(
    r"""\b(?:getenv\(|(?:environ|env)(?:\.get\(|\.pop\(|\[))\s*f?["']([A-Z][A-Z0-9_]*)["']\]?"""
)


def import_product() -> None:
    """Every module of the product, so that every settings model is defined."""
    for package in PRODUCT_PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)


def settings_models(model: type[EnvSettings] = EnvSettings) -> set[type[EnvSettings]]:
    found: set[type[EnvSettings]] = set()
    for subclass in model.__subclasses__():
        found |= {subclass, *settings_models(subclass)}
    return found


def declared_variables() -> dict[str, str]:
    """Every environment variable a settings model of the product declares -> the model."""
    import_product()
    return {
        variable: model.__name__
        for model in settings_models()
        for names in model.variables().values()
        for variable in names
    }


def configuration_section(readme: str) -> str:
    start = readme.index("\n## Configuration\n")
    return readme[start : readme.index("\n## ", start + 1)]


def table_variables(text: str) -> set[str]:
    """The variables named in the first column of every table row in ``text``."""
    rows = re.findall(r"^\| ([^|\n]*) \|", text, re.M)
    return {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def readme_variables(readme: str) -> set[str]:
    """Every environment variable the README names: in the first column of a configuration
    table (`BIND` too), and anywhere else written with an underscore."""
    named = table_variables(configuration_section(readme)) | set(README_VARIABLE.findall(readme))
    return named - set(NOT_SETTINGS)


def test_the_settings_tables_are_the_ones_the_models_render():
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.render(readme) == readme, "stale: run python -m scripts.settings_doc"
    assert settings_doc.marked_tables(readme) == set(settings_doc.TABLES)


def test_every_configuration_table_is_generated():
    """A hand-written table next to the generated ones could list anything."""
    section = configuration_section((ROOT / "README.md").read_text())
    unmarked = settings_doc.SECTION.sub("", section)
    assert settings_doc.SECTION.search(section), "the generated tables were found"
    hand_written = [line for line in unmarked.splitlines() if line.startswith("|")]
    assert not hand_written, f"tables not rendered by scripts/settings_doc.py: {hand_written}"


def test_every_settings_model_has_a_table():
    import_product()
    tabled = {model for models in settings_doc.TABLES.values() for model in models}
    untabled = {
        model.__name__
        for model in settings_models()
        if model.variables() and settings_doc.own_fields(model) and model not in tabled
    }
    assert not untabled, f"models missing from scripts/settings_doc.py TABLES: {untabled}"


def test_every_declared_variable_is_documented_in_a_configuration_table():
    declared = declared_variables()
    documented = table_variables(configuration_section((ROOT / "README.md").read_text()))
    missing = {name: model for name, model in declared.items() if name not in documented}
    assert not missing, f"declared but not in the README's configuration tables: {missing}"
    assert {"LOG_LEVEL", "OIDC_ISSUER", "BIND", "ALERT_CPU_PERCENT"} <= set(declared)


def test_every_variable_the_readme_names_is_declared_by_a_model():
    readme = (ROOT / "README.md").read_text()
    named = readme_variables(readme)
    undeclared = sorted(named - set(declared_variables()))
    assert not undeclared, (
        f"the README names {undeclared}, which no settings model declares: a setting that does "
        "nothing (or a name to add to NOT_SETTINGS, saying what it is)"
    )
    # The scan sees the tables and the text outside them.
    outside = readme.replace(configuration_section(readme), "")
    assert {"BIND", "SECRET_KEY"} <= named and "SECRET_KEY" in README_VARIABLE.findall(outside)
    assert README_VARIABLE.findall("set `REDIS_URL`, or `APP_ENV=production`") == [
        "REDIS_URL",
        "APP_ENV",
    ]


def product_sources() -> list[Path]:
    files = [ROOT / name for name in ENTRY_FILES]
    for package in PRODUCT_PACKAGES:
        files.extend((ROOT / package).rglob("*.py"))
    return files


def test_the_product_reads_no_variable_outside_a_settings_model():
    reads = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in product_sources()
        for name in READ_BY_NAME.findall(path.read_text())
    }
    # A write (a mapping handed to a model's from_env) is not a read.
    writes = re.compile(r"""(?:environ|env)\[["']([A-Z][A-Z0-9_]*)["']\]\s*=[^=]""")
    written = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in product_sources()
        for name in writes.findall(path.read_text())
    }
    assert not reads - written, f"read outside a settings model: {sorted(reads - written)}"
    # The scan itself works.
    assert READ_BY_NAME.findall(
        'os.environ.get("A_B") os.getenv("C") env["D"] environ["E"] env.get(f"F_G")'
    ) == ["A_B", "C", "D", "E", "F_G"]
    assert writes.findall('env["SCHEDULER_JOBS"] = args.jobs') == ["SCHEDULER_JOBS"]


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
