"""The README's configuration tables, rendered from the settings models.

``python -m scripts.settings_doc`` rewrites each table between ``<!-- settings:NAME -->`` and
``<!-- /settings -->`` in README.md; ``--check`` only reports whether any is out of date
(tests/test_docs.py checks the same).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from auth.settings import AuthSettings
from configuration.base import EnvSettings, LogSettings, MetricsFolderSettings
from configuration.gunicorn import GunicornSettings
from dashboard.request_metrics import MetricsSettings
from dashboard.security import SecuritySettings
from dashboard.settings import DashboardSettings
from data_access.settings import DataSettings
from data_access.settings_base import AwsSettings
from live.settings import IngestSettings
from pipeline.alerts import AlertSettings
from pipeline.collectors import CollectorSettings
from pipeline.notify import NotifySettings
from pipeline.scheduler import SchedulerSettings
from pipeline.simulate import SimulatorSettings

README = Path(__file__).resolve().parent.parent / "README.md"

# Marker name -> the models whose own settings its table lists, in order.
TABLES: dict[str, tuple[type[EnvSettings], ...]] = {
    "shared": (AwsSettings, LogSettings, MetricsFolderSettings),
    "data": (DataSettings,),
    "dashboard": (DashboardSettings, SecuritySettings, MetricsSettings),
    "sign-in": (AuthSettings,),
    "ingest": (IngestSettings,),
    "notify": (NotifySettings,),
    "scheduler": (SchedulerSettings, CollectorSettings, SimulatorSettings),
    "alerts": (AlertSettings,),
    "gunicorn": (GunicornSettings,),
}

SECTION = re.compile(
    r"(<!-- settings:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /settings -->)", re.S
)
HEADER = "| variable | meaning | default |\n|---|---|---|\n"


def own_fields(model: type[EnvSettings]) -> list[str]:
    """Fields ``model`` declares itself (a shared base's are listed in the base's table)."""
    inherited: set[str] = set()
    for base in model.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, EnvSettings):
            inherited.update(base.model_fields)
    return [name for name in model.variables() if name not in inherited]


def shown_default(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, tuple | frozenset):
        return f"`{','.join(str(item) for item in value)}`" if value else "none"
    if value == "":
        return "empty"
    return f"`{value}`"


def table(models: tuple[type[EnvSettings], ...]) -> str:
    rows = []
    for model in models:
        for name in own_fields(model):
            info = model.model_fields[name]
            variables = ", ".join(f"`{variable}`" for variable in model.variables()[name])
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            default = extra.get("shown_default") or shown_default(info.get_default())
            rows.append(f"| {variables} | {info.description} | {default} |\n")
    return HEADER + "".join(rows)


def render(readme: str) -> str:
    """``readme`` with every marked table regenerated; KeyError for an unknown marker."""

    def replace(match: re.Match[str]) -> str:
        return match.group(1) + table(TABLES[match.group("name")]) + match.group(4)

    return SECTION.sub(replace, readme)


def marked_tables(readme: str) -> set[str]:
    return {match.group("name") for match in SECTION.finditer(readme)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    rendered = render(current)
    if args.check:
        if rendered != current:
            print("README.md settings tables are stale: python -m scripts.settings_doc")
            return 1
        return 0
    README.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
