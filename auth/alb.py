"""``AUTH_MODE=alb``: verify the ``x-amzn-oidc-data`` JWT that an AWS load balancer adds.

The load balancer runs the OpenID Connect flow itself and forwards the user's claims in
an ES256-signed JWT. Its header carries ``kid``, ``signer`` (the load balancer ARN),
``exp``, ``iss`` and ``client``. The public key for ``kid`` is a PEM document at
``https://public-keys.auth.elb.{region}.amazonaws.com/{kid}``.

Two quirks: the load balancer pads its base64url segments with ``=``, which strict JWT
libraries reject, so padding is removed before decoding; and ``kid`` goes into a URL, so
it is checked against a strict pattern before any key is fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import requests
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from auth.provider import ProviderBusy, ProviderGate, get_within

ALB_DATA_HEADER = "x-amzn-oidc-data"
ALB_SESSION_COOKIE_PREFIX = "AWSELBAuthSessionCookie"
# AWS key ids are UUIDs; anything else is refused before it can reach the key URL.
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_CACHED_KEYS = 32
# A kid the key endpoint does not know is remembered as a miss this long, so a stream of
# forged tokens costs one outbound request per kid per minute, not one per request.
UNKNOWN_KID_SECONDS = 60.0


class AlbTokenRejected(Exception):
    """The header is missing, malformed, expired, or not signed by the expected load balancer."""


class AlbKeyUnavailable(Exception):
    """The public key endpoint could not be reached: a 503, not the user's fault."""


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def strip_padding(token: str) -> str:
    """The token with ``=`` padding removed from each segment (the load balancer adds it)."""
    return ".".join(part.rstrip("=") for part in token.strip().split("."))


def unverified_header(token: str) -> dict:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise AlbTokenRejected("not a compact JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise AlbTokenRejected(f"unreadable header: {exc}") from None
    if not isinstance(header, dict):
        raise AlbTokenRejected("header is not a JSON object")
    return header


class AlbVerifier:
    def __init__(
        self,
        *,
        key_url_template: str,
        expected_signer: str,
        leeway_seconds: int = 60,
        expected_issuer: str = "",
        expected_client: str = "",
        timeout_seconds: float = 3.0,
        max_concurrent_fetches: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_url_template = key_url_template
        self.expected_signer = expected_signer
        self.leeway_seconds = leeway_seconds
        self.expected_issuer = expected_issuer
        self.expected_client = expected_client
        self.timeout_seconds = timeout_seconds  # whole-call deadline of one key fetch
        # Key fetches happen on ordinary requests: a hung key endpoint may hold only this
        # many threads of the worker; the rest get a 503 at once.
        self.gate = ProviderGate(max_concurrent_fetches)
        self.clock = clock
        self._keys: OrderedDict[str, ECKey] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()  # kid -> when to ask again
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict:
        """The claims of a valid token; raises AlbTokenRejected or AlbKeyUnavailable."""
        token = strip_padding(token)
        header = unverified_header(token)
        if header.get("alg") != "ES256":
            raise AlbTokenRejected(f"alg {header.get('alg')!r} is not ES256")
        # The signer is checked before any key is fetched: tokens from other load
        # balancers (or anyone) never cause a request to the key endpoint.
        if header.get("signer") != self.expected_signer:
            raise AlbTokenRejected(f"signer {header.get('signer')!r} is not the expected one")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise AlbTokenRejected("kid is missing or malformed")
        key = self.public_key(kid)
        try:
            signed = jws.deserialize_compact(
                token, key, registry=JWSRegistry(algorithms=["ES256"], strict_check_header=False)
            )
            claims = json.loads(signed.payload)
        except (JoseError, ValueError) as exc:
            raise AlbTokenRejected(f"signature check failed: {type(exc).__name__}") from None
        if not isinstance(claims, dict):
            raise AlbTokenRejected("payload is not a JSON object")
        self._check_expiry(header, claims)
        if self.expected_issuer and header.get("iss", claims.get("iss")) != self.expected_issuer:
            raise AlbTokenRejected("issuer is not the configured OIDC_ISSUER")
        if self.expected_client and header.get("client") != self.expected_client:
            raise AlbTokenRejected("client is not the configured OIDC_CLIENT_ID")
        if not claims.get("sub"):
            raise AlbTokenRejected("no sub claim")
        return claims

    def _check_expiry(self, header: dict, claims: dict) -> None:
        expiries = [value for value in (header.get("exp"), claims.get("exp")) if value is not None]
        if not expiries:
            raise AlbTokenRejected("no exp")
        if not all(isinstance(value, int | float) for value in expiries):
            raise AlbTokenRejected("exp is not a number")
        if self.clock() > min(expiries) + self.leeway_seconds:
            raise AlbTokenRejected("token expired")

    def public_key(self, kid: str) -> ECKey:
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                self._keys.move_to_end(kid)
                return key
            if self._unknown.get(kid, 0.0) > self.clock():
                raise AlbTokenRejected(f"no public key for kid {kid} (remembered)")
        url = self.key_url_template.replace("{kid}", kid)
        try:
            response = get_within(url, self.timeout_seconds, self.gate)
        except ProviderBusy:
            raise AlbKeyUnavailable("key endpoint busy: every fetch slot is in use") from None
        except requests.RequestException as exc:
            raise AlbKeyUnavailable(f"key endpoint unreachable: {type(exc).__name__}") from None
        if response.status_code in (403, 404):
            with self._lock:
                self._unknown[kid] = self.clock() + UNKNOWN_KID_SECONDS
                self._unknown.move_to_end(kid)
                while len(self._unknown) > MAX_CACHED_KEYS * 32:
                    self._unknown.popitem(last=False)
            raise AlbTokenRejected(f"no public key for kid {kid}")
        if response.status_code != 200:
            raise AlbKeyUnavailable(f"key endpoint answered {response.status_code}")
        try:
            key = ECKey.import_key(response.text)
        except (JoseError, ValueError, TypeError) as exc:
            raise AlbKeyUnavailable(f"key endpoint sent no usable key: {exc}") from None
        with self._lock:
            self._keys[kid] = key
            while len(self._keys) > MAX_CACHED_KEYS:
                self._keys.popitem(last=False)
        return key
