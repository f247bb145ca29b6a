"""The AWS region and endpoint, declared once for every package that builds AWS clients."""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from configuration.base import EnvSettings, setting


class AwsSettings(EnvSettings):
    """The region and endpoint every AWS client of the project uses."""

    aws_region: str = setting(
        "us-east-1", "AWS_REGION", "AWS_DEFAULT_REGION", description="region", min_length=1
    )
    aws_endpoint_url: str | None = setting(
        None,
        "AWS_ENDPOINT_URL",
        description="endpoint of every AWS service other than AWS's own (local servers); "
        "`AWS_ENDPOINT_URL_<SERVICE>` overrides it per service",
        shown_default="AWS",
    )

    # Service endpoint fields of a subclass that fall back to ``aws_endpoint_url``.
    service_endpoints: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _general_endpoint(cls, data: object) -> object:
        """A service without its own endpoint uses the general one, as botocore does."""
        if not isinstance(data, dict) or not data.get("aws_endpoint_url"):
            return data
        merged = dict(data)
        for name in cls.service_endpoints:
            if not merged.get(name):
                merged[name] = data["aws_endpoint_url"]
        return merged
