"""Settings for authentication, built once from the environment.

=========================  ==========================================  =========================
variable                   meaning                                     default
=========================  ==========================================  =========================
``AUTH_MODE``              ``oidc``, ``alb`` or ``dev``                ``dev`` (must be explicit
                                                                       in production)
``APP_ENV``                ``production`` enforces the checks below    ``development``
``SECRET_KEY``             signs the session cookie; required in       random per process (dev)
                           production, at least 32 characters
``OIDC_ISSUER``            issuer URL, exactly as the provider's       required for ``oidc``
                           ``iss``; discovery is read from
                           ``<issuer>/.well-known/openid-configuration``
``OIDC_CLIENT_ID``         client id registered at the provider        required for ``oidc``
``OIDC_CLIENT_SECRET``     client secret (confidential client)         required for ``oidc``
``OIDC_TRUSTED_AUDIENCES`` other audiences an ID token may also name   none
                           (comma-separated); any other is refused
``OIDC_SCOPES``            scopes asked for                            ``openid email profile``
``OIDC_REDIRECT_URI``      callback URL registered at the provider     built from the request
                                                                       (``/auth/callback``)
``OIDC_ROLES_CLAIM``       dotted path to the claim holding groups     ``groups``
                           (``realm_access.roles``, ``cognito:groups``)
``ROLE_MAP``               ``group=role,...``; roles are viewer,       required for ``oidc``
                           operator, admin; the highest match wins     and ``alb``
``OIDC_LEEWAY_SECONDS``    clock skew allowed on exp/iat/nbf           ``60``
``OIDC_TIMEOUT_SECONDS``   whole-call deadline of each call to the     ``5``
                           provider (and of one sign-in's calls
                           together); also the ALB key fetch's
``OIDC_CACHE_SECONDS``     how long discovery and the JWKS are kept    ``300``
``OIDC_MAX_CONCURRENT_CALLS`` threads per worker that may call or     ``2``
                           wait on the provider at once; more get a
                           503 "busy" page at once
``SESSION_IDLE_MINUTES``   a session unused this long ends             ``60``
``SESSION_MAX_HOURS``      a session ends this long after sign-in      ``12``
``SESSION_RECHECK_SECONDS`` how long a worker trusts a session it     ``5``
                           looked up; a session ended on another
                           worker is refused here within this time
                           (``0``: every request asks the store)
``SESSION_KIOSK_USERS``    e-mails (comma-separated) whose background  none
                           polls count as activity, for unattended
                           wall screens; others idle out while only
                           polling
``ALB_REGION``             region of the load balancer (key URL)       empty
``ALB_KEY_URL``            public key URL template with ``{kid}``      ``https://public-keys.
                                                                       auth.elb.{region}.
                                                                       amazonaws.com/{kid}``
``ALB_EXPECTED_SIGNER``    ARN of the load balancer that signs         required for ``alb``
``ALB_LOGOUT_URL``         where ``/logout`` sends the browser after   ``/signed-out``
                           expiring the ALB cookies (the provider's
                           logout endpoint)
``PROXY_FIX_X_FOR``        trusted proxies setting X-Forwarded-For     ``0`` (off)
``PROXY_FIX_X_PROTO``      ... X-Forwarded-Proto                       ``0``
``PROXY_FIX_X_HOST``       ... X-Forwarded-Host                        ``0``
``PROXY_FIX_X_PORT``       ... X-Forwarded-Port                        ``0``
``PROXY_FIX_X_PREFIX``     ... X-Forwarded-Prefix                      ``0``
``DEV_USER``               e-mail of the fixed ``dev`` user            ``dev@localhost``
``DEV_ROLE``               role of the fixed ``dev`` user              ``admin``
=========================  ==========================================  =========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from auth.roles import ROLES

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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


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


@dataclass(frozen=True)
class AuthSettings:
    mode: AuthMode = "dev"
    mode_explicit: bool = False
    secret_key: str = ""
    production: bool = False
    dev_user: str = "dev@localhost"
    dev_role: str = "admin"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    oidc_trusted_audiences: tuple[str, ...] = ()
    oidc_scopes: str = "openid email profile"
    oidc_redirect_uri: str = ""
    oidc_roles_claim: str = "groups"
    role_map: tuple[tuple[str, str], ...] = ()
    oidc_leeway_seconds: int = 60
    oidc_timeout_seconds: int = 5
    oidc_cache_seconds: int = 300
    oidc_max_concurrent_calls: int = 2
    session_idle_minutes: int = 60
    session_max_hours: int = 12
    session_recheck_seconds: int = 5
    session_kiosk_users: tuple[str, ...] = ()
    alb_region: str = ""
    alb_key_url: str = ""
    alb_expected_signer: str = ""
    alb_logout_url: str = ""
    proxy_fix: ProxyFixCounts = ProxyFixCounts()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthSettings:
        env = os.environ if env is None else env
        mode = env.get("AUTH_MODE", "").strip()
        if mode and mode not in AUTH_MODES:
            raise ValueError(f"AUTH_MODE must be dev, oidc or alb, not {mode!r}")
        region = env.get("ALB_REGION", "").strip()
        default_key_url = ALB_PUBLIC_KEY_URL.replace("{region}", region) if region else ""
        return cls(
            mode=mode or "dev",  # type: ignore[arg-type]
            mode_explicit=bool(mode),
            secret_key=env.get("SECRET_KEY", ""),
            production=env.get("APP_ENV", "development") == "production",
            dev_user=env.get("DEV_USER", cls.dev_user),
            dev_role=env.get("DEV_ROLE", cls.dev_role),
            oidc_issuer=env.get("OIDC_ISSUER", "").strip(),
            oidc_client_id=env.get("OIDC_CLIENT_ID", "").strip(),
            oidc_client_secret=env.get("OIDC_CLIENT_SECRET", ""),
            oidc_trusted_audiences=tuple(
                value.strip()
                for value in env.get("OIDC_TRUSTED_AUDIENCES", "").split(",")
                if value.strip()
            ),
            oidc_scopes=" ".join(env.get("OIDC_SCOPES", cls.oidc_scopes).replace(",", " ").split()),
            oidc_redirect_uri=env.get("OIDC_REDIRECT_URI", "").strip(),
            oidc_roles_claim=env.get("OIDC_ROLES_CLAIM", "").strip() or cls.oidc_roles_claim,
            role_map=parse_role_map(env.get("ROLE_MAP", "")),
            oidc_leeway_seconds=_int(env, "OIDC_LEEWAY_SECONDS", cls.oidc_leeway_seconds),
            oidc_timeout_seconds=_int(env, "OIDC_TIMEOUT_SECONDS", cls.oidc_timeout_seconds),
            oidc_cache_seconds=_int(env, "OIDC_CACHE_SECONDS", cls.oidc_cache_seconds),
            oidc_max_concurrent_calls=_int(
                env, "OIDC_MAX_CONCURRENT_CALLS", cls.oidc_max_concurrent_calls
            ),
            session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", cls.session_idle_minutes),
            session_max_hours=_int(env, "SESSION_MAX_HOURS", cls.session_max_hours),
            session_recheck_seconds=_int(
                env, "SESSION_RECHECK_SECONDS", cls.session_recheck_seconds
            ),
            session_kiosk_users=tuple(
                value.strip().lower()
                for value in env.get("SESSION_KIOSK_USERS", "").split(",")
                if value.strip()
            ),
            alb_region=region,
            alb_key_url=env.get("ALB_KEY_URL", "").strip() or default_key_url,
            alb_expected_signer=env.get("ALB_EXPECTED_SIGNER", "").strip(),
            alb_logout_url=env.get("ALB_LOGOUT_URL", "").strip(),
            proxy_fix=ProxyFixCounts(
                x_for=_int(env, "PROXY_FIX_X_FOR", 0),
                x_proto=_int(env, "PROXY_FIX_X_PROTO", 0),
                x_host=_int(env, "PROXY_FIX_X_HOST", 0),
                x_port=_int(env, "PROXY_FIX_X_PORT", 0),
                x_prefix=_int(env, "PROXY_FIX_X_PREFIX", 0),
            ),
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
