"""``AUTH_MODE=oidc``: authorization code flow with PKCE through Authlib.

Authlib keeps state, nonce and the PKCE verifier in the session between ``/login`` and
the callback, and exchanges the code. The ID token is then checked as OpenID Connect
Core 1.0 section 3.1.3.7 asks, against the configured issuer and client id rather than
whatever the discovery document says:

1. (no encryption is configured, so a JWE is refused by the JWS decoder)
2. ``iss`` equals ``OIDC_ISSUER`` exactly (and discovery must name the same issuer)
3. ``aud`` contains ``OIDC_CLIENT_ID``, and every other audience is one of
   ``OIDC_TRUSTED_AUDIENCES`` (empty by default: the client alone)
4-5. with several audiences ``azp`` must be present, and ``azp`` must be our client id
6-8. the signature verifies with a key from the provider's JWKS, and ``alg`` is one of
   ``ALLOWED_ID_TOKEN_ALGS`` (asymmetric only: ``none`` and HMAC are refused)
9-10. ``exp`` is in the future and ``iat`` not in the future, within ``OIDC_LEEWAY_SECONDS``
11. ``nonce`` equals the one sent with this sign-in
plus ``at_hash`` when present. Authlib's JOSE layer (joserfc) raises errors that do not
derive from Authlib's base error; every failure becomes a ``SignInFailed``.

Every call to the provider goes through ``auth.provider``: a whole-call deadline
(``OIDC_TIMEOUT_SECONDS``, shared by one sign-in's calls), a per-worker bound on threads
calling or waiting (``OIDC_MAX_CONCURRENT_CALLS``), and discovery and the JWKS kept for
``OIDC_CACHE_SECONDS`` and refreshed by one thread at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from authlib.oidc.core import CodeIDToken
from flask import Flask, Response, request, session
from joserfc.errors import InvalidClaimError, JoseError, UnsupportedAlgorithmError

from auth.provider import (
    DeadlineOAuth2Session,
    ProviderBusy,
    ProviderGate,
    SingleFlightCache,
    call_budget,
    get_within,
)
from auth.roles import claim_at_path
from auth.settings import AuthSettings

log = logging.getLogger(__name__)

CLIENT_NAME = "oidc"
ALLOWED_ID_TOKEN_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Sign-ins started but not finished that the session remembers (one per open tab); the
# cookie holds about 200 bytes for each.
MAX_PENDING_SIGN_INS = 3
# Claims about the protocol exchange itself, not the user: not kept in the session.
EXCHANGE_CLAIMS = frozenset({"nonce", "at_hash", "c_hash", "s_hash"})


class SignInFailed(Exception):
    """A sign-in that cannot go on; ``status`` and ``message`` are for the page."""

    def __init__(self, reason: str, status: int, message: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail or message}")
        self.reason = reason
        self.status = status
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class SignedIn:
    claims: dict
    id_token: str


class IdTokenClaims(CodeIDToken):
    """Authlib's code-flow ID token checks, plus an algorithm allow-list."""

    def validate(self, now: int | None = None, leeway: int = 0) -> None:
        alg = self.header.get("alg")
        if alg not in ALLOWED_ID_TOKEN_ALGS:
            raise UnsupportedAlgorithmError(f"ID token alg {alg!r} is not allowed")
        audience = self.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and not self.get("azp"):
            raise InvalidClaimError("azp")
        super().validate(now=now, leeway=leeway)
        option = self.options.get("aud") or {}
        trusted = {option.get("value"), *option.get("trusted", ())}
        audiences = audience if isinstance(audience, list) else [audience]
        # Core 3.1.3.7 step 3: an audience this client does not trust rejects the token.
        if any(value not in trusted for value in audiences):
            raise InvalidClaimError("aud")


class CachedProviderApp(FlaskOAuth2App):
    """Authlib's Flask client reading discovery and the JWKS from single-flight caches
    instead of its own per-process dict (which it never refreshes), and calling the
    provider through deadline-bounded sessions."""

    client_cls = DeadlineOAuth2Session
    discovery: SingleFlightCache[dict]
    jwks: SingleFlightCache[dict]

    def load_server_metadata(self) -> dict:
        return self.discovery.get()

    def fetch_jwk_set(self, force: bool = False) -> dict:
        # force: the ID token names a key the cached set lacks (the provider rotated keys).
        return self.jwks.get(force=force)


def discovery_url(issuer: str) -> str:
    # OpenID Connect Discovery 1.0 section 4: drop a trailing slash, then append.
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


class OidcSignIn:
    def __init__(self, server: Flask, settings: AuthSettings) -> None:
        self.settings = settings
        self.gate = ProviderGate(settings.oidc_max_concurrent_calls)
        oauth = OAuth(server)
        self.client: CachedProviderApp = oauth.register(
            name=CLIENT_NAME,
            client_cls=CachedProviderApp,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=discovery_url(settings.oidc_issuer),
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic",
                "provider_gate": self.gate,
                "call_seconds": settings.oidc_timeout_seconds,
            },
        )
        cached = {
            "ttl_seconds": settings.oidc_cache_seconds,
            "gate": self.gate,
            "wait_seconds": settings.oidc_timeout_seconds,
        }
        self.discovery = self.client.discovery = SingleFlightCache(self._fetch_discovery, **cached)
        self.jwks = self.client.jwks = SingleFlightCache(self._fetch_jwks, **cached)

    def metadata(self) -> dict:
        """The discovery document, from the cache or fetched by one thread at a time."""
        try:
            return self.discovery.get()
        except ProviderBusy:
            raise _busy() from None
        except (requests.RequestException, ValueError) as exc:
            raise _unreachable("discovery", exc) from None

    def _fetch_discovery(self) -> dict:
        response = get_within(
            discovery_url(self.settings.oidc_issuer), self.settings.oidc_timeout_seconds, self.gate
        )
        response.raise_for_status()
        metadata = response.json()
        if not isinstance(metadata, dict):
            raise ValueError("the discovery document is not a JSON object")
        if metadata.get("issuer") != self.settings.oidc_issuer:
            found = metadata.get("issuer")
            # Raised from the fetch, so the document is not cached: a fixed provider or
            # configuration is picked up on the next try.
            raise SignInFailed(
                "issuer-mismatch",
                503,
                "Sign-in is misconfigured: the identity provider names a different issuer "
                "than this app expects. An administrator must correct OIDC_ISSUER.",
                f"discovery issuer {found!r} != OIDC_ISSUER {self.settings.oidc_issuer!r}",
            )
        return metadata

    def _fetch_jwks(self) -> dict:
        uri = self.metadata().get("jwks_uri")
        if not uri:
            raise ValueError('the discovery document has no "jwks_uri"')
        response = get_within(uri, self.settings.oidc_timeout_seconds, self.gate)
        response.raise_for_status()
        key_set = response.json()
        if not isinstance(key_set, dict) or not isinstance(key_set.get("keys"), list):
            raise ValueError("the JWKS is not a JSON object with keys")
        return key_set

    def begin(self, redirect_uri: str) -> Response:
        """The redirect to the provider's authorization endpoint."""
        with call_budget(self.settings.oidc_timeout_seconds):
            # Discovery within OIDC_CACHE_SECONDS is reused; a failed refresh drops it, so
            # users are not sent to a provider known to be down.
            self.metadata()
            _forget_older_attempts(keep=MAX_PENDING_SIGN_INS - 1)
            try:
                return self.client.authorize_redirect(redirect_uri)
            except ProviderBusy:
                raise _busy() from None
            except (requests.RequestException, AuthlibBaseError, RuntimeError) as exc:
                raise _unreachable("authorization request", exc) from None

    def finish(self) -> SignedIn:
        """Check the callback, exchange the code, validate the ID token, and read the claims."""
        # One deadline for the whole callback: discovery, token, JWKS and userinfo together.
        with call_budget(self.settings.oidc_timeout_seconds):
            return self._finish()

    def _finish(self) -> SignedIn:
        error = request.args.get("error")
        if error:
            # The provider sends the user back without a code: nothing is exchanged.
            state = request.args.get("state")
            if state:
                self.client.framework.clear_state_data(session, state)
            description = request.args.get("error_description", "")
            if error == "access_denied":
                raise SignInFailed(
                    "cancelled", 403, "Sign-in was cancelled at the identity provider.", description
                )
            raise SignInFailed(
                "provider-error",
                401,
                f"The identity provider did not sign you in ({error}).",
                description,
            )
        self.metadata()
        returned_issuer = request.args.get("iss")
        if returned_issuer is not None and returned_issuer != self.settings.oidc_issuer:
            # RFC 9207: a response from another issuer is a mix-up attempt.
            raise SignInFailed(
                "issuer-mismatch",
                400,
                "The sign-in response came from an unexpected issuer.",
                f"iss parameter {returned_issuer!r}",
            )
        try:
            token = self.client.authorize_access_token(
                claims_cls=IdTokenClaims,
                claims_options=self._claims_options(),
                leeway=self.settings.oidc_leeway_seconds,
            )
        except ProviderBusy:
            raise _busy() from None
        except MismatchingStateError:
            raise SignInFailed(
                "state-mismatch",
                400,
                "This sign-in response does not belong to a sign-in started here, or it "
                "was already used.",
            ) from None
        except JoseError as exc:
            raise SignInFailed(
                "token-rejected",
                401,
                "The identity provider's ID token was not valid, so you were not signed in.",
                f"{type(exc).__name__}: {exc}",
            ) from None
        except OAuthError as exc:
            raise SignInFailed(
                "code-exchange-failed",
                401,
                "The identity provider refused to complete this sign-in.",
                f"{exc.error}: {exc.description}",
            ) from None
        except AuthlibBaseError as exc:
            raise SignInFailed(
                "code-exchange-failed",
                401,
                "The identity provider refused to complete this sign-in.",
                f"{type(exc).__name__}: {exc}",
            ) from None
        except ValueError as exc:
            # Malformed token responses or key sets from the provider.
            raise SignInFailed(
                "token-rejected",
                401,
                "The identity provider's answer could not be read, so you were not signed in.",
                f"{type(exc).__name__}: {exc}",
            ) from None
        except requests.RequestException as exc:
            raise _unreachable("token exchange", exc) from None
        id_token = token.get("id_token")
        claims = token.get("userinfo")
        if not id_token or claims is None:
            raise SignInFailed(
                "no-id-token",
                401,
                "The identity provider answered without an ID token.",
                f"token response keys {sorted(token)}",
            )
        kept = {name: value for name, value in claims.items() if name not in EXCHANGE_CLAIMS}
        return SignedIn(claims=self._with_userinfo(kept, token), id_token=id_token)

    def _with_userinfo(self, claims: dict, token: dict) -> dict:
        """Add userinfo claims when the ID token lacks the roles claim (common with Okta)."""
        if claim_at_path(claims, self.settings.oidc_roles_claim) is not None:
            return claims
        if not self.metadata().get("userinfo_endpoint") or not token.get("access_token"):
            return claims
        access = {key: value for key, value in token.items() if key != "userinfo"}
        try:
            info = dict(self.client.userinfo(token=access))
        except ProviderBusy:
            raise _busy() from None
        except (requests.RequestException, AuthlibBaseError, ValueError) as exc:
            raise _unreachable("userinfo", exc) from None
        if info.get("sub") != claims.get("sub"):
            # OpenID Connect Core 5.3.4: userinfo for another subject must not be used.
            raise SignInFailed(
                "token-rejected",
                401,
                "The identity provider's user information did not match the ID token.",
                "userinfo sub differs from ID token sub",
            )
        return {**info, **claims}

    def logout_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """The provider's end-session URL, or None when it has none or cannot be reached."""
        try:
            with call_budget(self.settings.oidc_timeout_seconds):
                metadata = self.metadata()
        except SignInFailed as exc:
            log.warning("provider logout skipped: %s", exc)
            return None
        if not metadata.get("end_session_endpoint"):
            return None
        result = self.client.create_logout_url(
            post_logout_redirect_uri=post_logout_redirect_uri,
            id_token_hint=id_token or None,
            client_id=self.settings.oidc_client_id,
        )
        return result["url"]

    def _claims_options(self) -> dict:
        # A fresh dict per call: Authlib pops entries out of the options it is given.
        return {
            "iss": {"essential": True, "value": self.settings.oidc_issuer},
            "aud": {
                "essential": True,
                "value": self.settings.oidc_client_id,
                "trusted": self.settings.oidc_trusted_audiences,
            },
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }


def _forget_older_attempts(keep: int) -> None:
    """Drop all but the newest ``keep`` pending sign-ins, so repeated clicks on "sign in"
    cannot grow the session cookie past what browsers store."""
    prefix = f"_state_{CLIENT_NAME}_"
    pending = sorted(
        (key for key in session if key.startswith(prefix)),
        key=lambda key: (session[key] or {}).get("exp", 0),
    )
    for key in pending[: max(len(pending) - keep, 0)]:
        session.pop(key, None)


def _busy() -> SignInFailed:
    return SignInFailed(
        "provider-busy",
        503,
        "The identity provider is busy: other sign-ins are waiting for it. Please try "
        "again in a moment.",
        "every OIDC_MAX_CONCURRENT_CALLS slot of this worker is in use",
    )


def _unreachable(step: str, exc: Exception) -> SignInFailed:
    return SignInFailed(
        "provider-unreachable",
        503,
        "The identity provider cannot be reached right now. Please try again in a moment.",
        f"{step}: {type(exc).__name__}: {exc}",
    )
