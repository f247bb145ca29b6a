"""The auth package's boundaries: imports, the ID token algorithm list, escaped pages."""

from __future__ import annotations

import subprocess
import sys

import pytest
from joserfc.errors import InvalidClaimError, UnsupportedAlgorithmError

from auth.oidc import ALLOWED_ID_TOKEN_ALGS, IdTokenClaims, discovery_url
from auth.pages import refusal_page


def test_auth_imports_neither_dash_nor_data_access():
    probe = (
        "import sys, auth, auth.guard, auth.views, auth.oidc, auth.alb, auth.audit, auth.pages; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dash', 'data_access')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def id_token(header: dict, trusted: tuple[str, ...] = (), **claims: object) -> IdTokenClaims:
    now = 1_700_000_000
    base = {"iss": "https://idp", "sub": "s", "aud": "client", "exp": now + 60, "iat": now}
    return IdTokenClaims(
        {**base, **claims},
        header,
        {
            "iss": {"essential": True, "value": "https://idp"},
            "aud": {"value": "client", "trusted": trusted},
        },
        {"client_id": "client", "nonce": None},
    )


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", None])
def test_symmetric_and_missing_algorithms_are_refused(alg):
    assert alg not in ALLOWED_ID_TOKEN_ALGS
    with pytest.raises(UnsupportedAlgorithmError):
        id_token({"alg": alg}).validate(now=1_700_000_000)


def test_several_audiences_need_azp():
    with pytest.raises(InvalidClaimError, match="azp"):
        id_token({"alg": "RS256"}, aud=["client", "other"]).validate(now=1_700_000_000)
    token = id_token({"alg": "RS256"}, ("other",), aud=["client", "other"], azp="client")
    token.validate(now=1_700_000_000)


def test_an_audience_the_client_does_not_trust_is_refused():
    with pytest.raises(InvalidClaimError, match="aud"):
        id_token({"alg": "RS256"}, aud=["other", "client"], azp="client").validate(
            now=1_700_000_000
        )


@pytest.mark.parametrize(
    ("issuer", "url"),
    [
        ("https://idp.example.test", "https://idp.example.test/.well-known/openid-configuration"),
        (
            "https://idp.example.test/realms/x/",
            "https://idp.example.test/realms/x/.well-known/openid-configuration",
        ),
    ],
)
def test_discovery_url(issuer, url):
    assert discovery_url(issuer) == url


def test_claims_are_escaped_on_the_refusal_page(app_context):
    page = refusal_page(
        claim_path="groups",
        claim_value=["<script>alert(1)</script>"],
        claims={"name": "<img src=x onerror=alert(1)>"},
        retry_url="/login",
    )

    body = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;img src=x" in body


@pytest.fixture
def app_context():
    from flask import Flask

    with Flask("pages").app_context():
        yield
