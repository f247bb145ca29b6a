"""The base of every package's settings: a frozen pydantic-settings model per package.

Each setting is a field whose ``validation_alias`` names its environment variable(s) and whose
``description`` is the README's text for it (``scripts/settings_doc.py`` renders the tables).
Settings several processes read (the log level, the Prometheus multiprocess folder) are
declared here once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars


class SettingsError(ValueError):
    """One message for every invalid variable, each named with what it must be."""


def setting(
    default: Any,
    *names: str,
    description: str,
    shown_default: str | None = None,
    **constraints: Any,
) -> Any:
    """A field read from the first of ``names`` that is set (and not empty).

    ``shown_default`` is the README's default where the value itself would mislead (derived
    from another setting, or computed at start-up)."""
    extra = {"shown_default": shown_default} if shown_default is not None else None
    return Field(
        default,
        validation_alias=names[0] if len(names) == 1 else AliasChoices(*names),
        description=description,
        json_schema_extra=extra,
        **constraints,
    )


def variable_names(info: FieldInfo) -> tuple[str, ...]:
    """The environment variables a field reads, in order of precedence; () if none."""
    alias = info.validation_alias
    if isinstance(alias, str):
        return (alias,)
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return ()


def comma_list(value: object) -> object:
    """``"a, b,,c"`` -> ``("a", "b", "c")``; other values pass through to the field's type."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class EnvSettings(BaseSettings):
    """Frozen; built from a mapping by ``from_env`` (the process environment by default)."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        # An empty variable means "use the default", as an unset one does.
        env_ignore_empty=True,
        # Lists are comma-separated, not JSON: each list field splits its own text.
        enable_decoding=False,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: Any, **_other_sources: Any
    ) -> tuple[Any, ...]:
        # Only what the constructor is given: a test's mapping never mixes with os.environ.
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, tuple[str, ...]]:
        """Field name -> the environment variables it reads, for every field read from one."""
        found = {name: variable_names(info) for name, info in cls.model_fields.items()}
        return {name: names for name, names in found.items() if names}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings in ``env`` (default: the process environment); SettingsError if invalid."""
        read = _MappingEnvSource(cls, os.environ if env is None else env)()
        values: dict[str, Any] = {}
        for name, names in cls.variables().items():
            # The source reports a field under the first of its names whichever one was set.
            if names[0] in read:
                values[name] = read[names[0]]
        return cls.checked(**values)

    @classmethod
    def checked(cls, **values: Any) -> Self:
        """``cls(**values)``, with a validation failure as one SettingsError naming variables."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(cls.describe(exc)) from None

    @classmethod
    def describe(cls, error: ValidationError) -> str:
        variables = cls.variables()
        lines = []
        for item in error.errors(include_url=False):
            field = str(item["loc"][0]) if item["loc"] else ""
            name = " or ".join(variables.get(field, (field,))) if field else cls.__name__
            given = f"={item['input']!r}" if field else ""
            lines.append(f"{name}{given}: {item['msg'].removeprefix('Value error, ')}")
        return "; ".join(lines)


LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class LogSettings(EnvSettings):
    """The log level both the app and gunicorn's own log use."""

    log_level: LogLevel = setting(
        "INFO",
        "LOG_LEVEL",
        description="log level of the app and of gunicorn's error log; logs are JSON lines "
        "with the request id",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class MetricsFolderSettings(EnvSettings):
    """The folder gunicorn's workers write their Prometheus metric files to, read by gunicorn
    (which empties it at start), ``/metrics`` and the metrics collector."""

    multiproc_dir: str | None = setting(
        None,
        "PROMETHEUS_MULTIPROC_DIR",
        description="folder the gunicorn workers share for `/metrics` (prometheus_client's "
        "multiprocess mode); the collector reads the request metrics there",
        shown_default="none (one process)",
    )
