"""Settings for authentication, built once from the environment.

One pydantic-settings model (``configuration.base``): the README's Sign-in table is rendered
from it. Checks that depend on several settings (what production or a mode needs) are in
``AuthSettings.problems``, which ``init_auth`` turns into a refusal to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_validator

from auth.roles import ROLES
from configuration.base import EnvSettings, comma_list, setting

AuthMode = Literal["dev", "oidc", "alb"]
AUTH_MODES = ("dev", "oidc", "alb")
ALB_PUBLIC_KEY_URL = "https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"
MIN_PRODUCTION_SECRET_LENGTH = 32


def parse_role_map(text: str) -> tuple[tuple[str, str], ...]:
    """``"mc-admins=admin, mc-viewers=viewer"`` -> ``(("mc-admins", "admin"), ...)``."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        group, sep, role = item.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group:
            raise ValueError(f"ROLE_MAP entry {item.strip()!r} is not group=role")
        if role not in ROLES:
            raise ValueError(f"ROLE_MAP entry {item.strip()!r}: role must be one of {ROLES}")
        pairs.append((group, role))
    return tuple(pairs)


def _role_map(value: object) -> object:
    return parse_role_map(value) if isinstance(value, str) else value


def _scopes(value: object) -> object:
    """Space- or comma-separated, as the provider's documentation may write them."""
    return " ".join(value.replace(",", " ").split()) if isinstance(value, str) else value


def _lower_case_list(value: object) -> object:
    listed = comma_list(value)
    return tuple(item.lower() for item in listed) if isinstance(listed, tuple) else listed


@dataclass(frozen=True)
class ProxyFixCounts:
    """How many proxies in front of the app set each ``X-Forwarded-*`` header."""

    x_for: int = 0
    x_proto: int = 0
    x_host: int = 0
    x_port: int = 0
    x_prefix: int = 0

    @property
    def enabled(self) -> bool:
        return any((self.x_for, self.x_proto, self.x_host, self.x_port, self.x_prefix))


# Read without surrounding blanks; blanks alone mean the default.
_TRIMMED = (
    "mode",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_redirect_uri",
    "oidc_roles_claim",
    "alb_region",
    "alb_key_url",
    "alb_expected_signer",
    "alb_logout_url",
)


def _count(name: str, header: str) -> Any:
    return setting(
        0,
        name,
        description=f"trusted proxies setting `{header}` (1 behind an ALB; `0`: the header "
        "is ignored)",
        ge=0,
    )


class AuthSettings(EnvSettings):
    mode: AuthMode = setting(
        "dev",
        "AUTH_MODE",
        description="`oidc`, `alb` or `dev`",
        shown_default="`dev` (must be set explicitly in production)",
    )
    # Whether AUTH_MODE was given: production refuses to fall back to ``dev``.
    mode_explicit: bool = False
    app_env: str = setting(
        "development",
        "APP_ENV",
        description="`production` refuses to start without `SECRET_KEY`, an explicit "
        "`AUTH_MODE`, or in `dev` mode",
    )
    secret_key: str = setting(
        "",
        "SECRET_KEY",
        description="signs the session cookie; at least 32 characters in production; the same "
        "on every instance",
        shown_default="random per process (dev only)",
        repr=False,
    )
    dev_user: str = setting(
        "dev@localhost", "DEV_USER", description="e-mail of the fixed user of `dev` mode"
    )
    dev_role: str = setting(
        "admin",
        "DEV_ROLE",
        description="role of the fixed user of `dev` mode: viewer, operator or admin",
    )
    oidc_issuer: str = setting(
        "",
        "OIDC_ISSUER",
        description="must equal the provider's `iss` exactly; discovery is read from "
        "`<issuer>/.well-known/openid-configuration`",
        shown_default="required for `oidc`",
    )
    oidc_client_id: str = setting(
        "",
        "OIDC_CLIENT_ID",
        description="client id registered at the provider",
        shown_default="required for `oidc`",
    )
    oidc_client_secret: str = setting(
        "",
        "OIDC_CLIENT_SECRET",
        description="client secret (a confidential client)",
        shown_default="required for `oidc`",
        repr=False,
    )
    oidc_trusted_audiences: Annotated[tuple[str, ...], BeforeValidator(comma_list)] = setting(
        (),
        "OIDC_TRUSTED_AUDIENCES",
        description="other audiences an ID token may also name (comma-separated); a token "
        "naming any other audience is refused",
    )
    oidc_scopes: Annotated[str, BeforeValidator(_scopes)] = setting(
        "openid email profile", "OIDC_SCOPES", description="scopes asked for"
    )
    oidc_redirect_uri: str = setting(
        "",
        "OIDC_REDIRECT_URI",
        description="callback URL registered at the provider",
        shown_default="from the request (`/auth/callback`)",
    )
    oidc_roles_claim: str = setting(
        "groups",
        "OIDC_ROLES_CLAIM",
        description="dotted path to the groups claim (`groups`, `cognito:groups`, "
        "`realm_access.roles`, `hd`)",
    )
    role_map: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_role_map)] = setting(
        (),
        "ROLE_MAP",
        description="`group=role,...` with roles viewer, operator, admin; the highest match wins",
        shown_default="required for `oidc` and `alb`",
    )
    oidc_leeway_seconds: int = setting(
        60,
        "OIDC_LEEWAY_SECONDS",
        description="clock skew allowed on `exp`/`iat`/`nbf`",
        ge=0,
    )
    oidc_timeout_seconds: int = setting(
        5,
        "OIDC_TIMEOUT_SECONDS",
        description="whole-call deadline (total time, not per read) of each call to the "
        "provider, also shared by one sign-in's calls together; also bounds the ALB key fetch "
        "(at least 1 in `oidc` and `alb` modes)",
        ge=0,
    )
    oidc_cache_seconds: int = setting(
        300,
        "OIDC_CACHE_SECONDS",
        description="how long discovery and the JWKS are reused before one thread refreshes them",
        ge=0,
    )
    oidc_max_concurrent_calls: int = setting(
        2,
        "OIDC_MAX_CONCURRENT_CALLS",
        description="threads per worker that may call or wait on the provider (or the ALB key "
        'endpoint) at once; a sign-in that finds none free gets a 503 "identity provider busy" '
        "page at once (at least 1 in `oidc` and `alb` modes)",
        ge=0,
    )
    session_idle_minutes: int = setting(
        60,
        "SESSION_IDLE_MINUTES",
        description="a session unused this long ends (at least 1)",
        ge=0,
    )
    session_max_hours: int = setting(
        12,
        "SESSION_MAX_HOURS",
        description="a session ends this long after sign-in (at least 1)",
        ge=0,
    )
    session_recheck_seconds: int = setting(
        5,
        "SESSION_RECHECK_SECONDS",
        description="how long a worker reuses a session it looked up in the store; a session "
        "ended on another worker or instance is refused here within this many seconds (`0`: "
        "every request asks the store)",
        ge=0,
    )
    session_kiosk_users: Annotated[tuple[str, ...], BeforeValidator(_lower_case_list)] = setting(
        (),
        "SESSION_KIOSK_USERS",
        description="e-mail addresses (comma-separated) whose background polls count as "
        "activity, for unattended wall screens; others idle out while only polling",
    )
    alb_region: str = setting(
        "", "ALB_REGION", description="region of the load balancer, for its key URL"
    )
    alb_key_url: str = setting(
        "",
        "ALB_KEY_URL",
        description="public key URL template with `{kid}`",
        shown_default=f"`{ALB_PUBLIC_KEY_URL}` with `ALB_REGION`",
    )
    alb_expected_signer: str = setting(
        "",
        "ALB_EXPECTED_SIGNER",
        description="ARN of the load balancer that signs `x-amzn-oidc-data`",
        shown_default="required for `alb`",
    )
    alb_logout_url: str = setting(
        "",
        "ALB_LOGOUT_URL",
        description="where `/logout` sends the browser after expiring the ALB cookies (the "
        "provider's logout endpoint)",
        shown_default="`/signed-out`",
    )
    proxy_fix_x_for: int = _count("PROXY_FIX_X_FOR", "X-Forwarded-For")
    proxy_fix_x_proto: int = _count("PROXY_FIX_X_PROTO", "X-Forwarded-Proto")
    proxy_fix_x_host: int = _count("PROXY_FIX_X_HOST", "X-Forwarded-Host")
    proxy_fix_x_port: int = _count("PROXY_FIX_X_PORT", "X-Forwarded-Port")
    proxy_fix_x_prefix: int = _count("PROXY_FIX_X_PREFIX", "X-Forwarded-Prefix")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        for name in _TRIMMED:
            if isinstance(values.get(name), str):
                values[name] = values[name].strip()
                if not values[name]:
                    del values[name]
        values.setdefault("mode_explicit", "mode" in values)
        region = values.get("alb_region")
        if region and not values.get("alb_key_url"):
            values["alb_key_url"] = ALB_PUBLIC_KEY_URL.replace("{region}", region)
        return values

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def proxy_fix(self) -> ProxyFixCounts:
        return ProxyFixCounts(
            x_for=self.proxy_fix_x_for,
            x_proto=self.proxy_fix_x_proto,
            x_host=self.proxy_fix_x_host,
            x_port=self.proxy_fix_x_port,
            x_prefix=self.proxy_fix_x_prefix,
        )

    def problems(self) -> list[str]:
        """Why the app must not start with these settings; empty when they are usable."""
        found: list[str] = []
        if self.production:
            if not self.mode_explicit:
                found.append("APP_ENV=production needs an explicit AUTH_MODE (oidc or alb)")
            if len(self.secret_key) < MIN_PRODUCTION_SECRET_LENGTH:
                found.append(
                    f"APP_ENV=production needs SECRET_KEY of at least "
                    f"{MIN_PRODUCTION_SECRET_LENGTH} characters"
                )
            if self.mode == "dev":
                found.append("AUTH_MODE=dev is refused when APP_ENV=production")
        if self.mode == "dev" and self.dev_role not in ROLES:
            found.append(f"DEV_ROLE must be one of {ROLES}")
        if self.mode == "oidc":
            for name, value in (
                ("OIDC_ISSUER", self.oidc_issuer),
                ("OIDC_CLIENT_ID", self.oidc_client_id),
                ("OIDC_CLIENT_SECRET", self.oidc_client_secret),
            ):
                if not value:
                    found.append(f"AUTH_MODE=oidc needs {name}")
            if "openid" not in self.oidc_scopes.split():
                found.append("OIDC_SCOPES must include openid")
        if self.mode == "alb":
            if not self.alb_expected_signer:
                found.append("AUTH_MODE=alb needs ALB_EXPECTED_SIGNER (the load balancer ARN)")
            if "{kid}" not in self.alb_key_url:
                found.append("AUTH_MODE=alb needs ALB_REGION, or ALB_KEY_URL containing {kid}")
        if self.mode in ("oidc", "alb") and not self.role_map:
            found.append(f"AUTH_MODE={self.mode} needs ROLE_MAP (group=role,...)")
        if self.mode in ("oidc", "alb") and (
            self.oidc_timeout_seconds < 1 or self.oidc_max_concurrent_calls < 1
        ):
            found.append("OIDC_TIMEOUT_SECONDS and OIDC_MAX_CONCURRENT_CALLS must be at least 1")
        if self.session_idle_minutes < 1 or self.session_max_hours < 1:
            found.append("SESSION_IDLE_MINUTES and SESSION_MAX_HOURS must be at least 1")
        return found
