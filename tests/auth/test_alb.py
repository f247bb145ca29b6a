"""AUTH_MODE=alb: ES256 tokens made in the test, public keys served on loopback."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OctKey
from joserfc.jws import JWSRegistry

from auth.alb import ALB_DATA_HEADER, AlbTokenRejected, AlbVerifier, strip_padding
from auth.settings import AuthSettings
from devtools.servers import LOOPBACK, free_port
from tests.auth.conftest import audit_events, build_app

SIGNER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mc/50dc6c495c0c9188"
ISSUER = "https://idp.example.test"
CLIENT = "alb-client"
HTML = {"Accept": "text/html"}
GROUPS_BY_ROLE = {"admin": ["mc-admins"], "operator": ["mc-operators"], "viewer": ["mc-viewers"]}


class KeyServer:
    """Serves PEM public keys by kid, like public-keys.auth.elb.<region>.amazonaws.com."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.requests: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kid = self.path.lstrip("/")
                served.requests.append(kid)
                pem = served.keys.get(kid)
                self.send_response(200 if pem else 404)
                self.end_headers()
                self.wfile.write((pem or "not found").encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url_template(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}/{{kid}}"

    def publish(self, kid: str, key: ECKey) -> None:
        self.keys[kid] = key.as_pem(private=False).decode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


@pytest.fixture
def signing_key(key_server: KeyServer) -> tuple[str, ECKey]:
    key = ECKey.generate_key("P-256")
    kid = "6a1b6d2e-1f0e-4c3c-9a55-0d5f0e0d1a2b"
    key_server.publish(kid, key)
    return kid, key


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def alb_token(
    key: ECKey,
    kid: str,
    claims: dict,
    *,
    signer: str = SIGNER,
    expires_in: float = 60,
    alg: str = "ES256",
    pad: bool = True,
) -> str:
    """A token shaped like the load balancer's, with its base64 padding quirk."""
    exp = int(time.time() + expires_in)
    header = {
        "typ": "JWT",
        "kid": kid,
        "alg": alg,
        "iss": ISSUER,
        "client": CLIENT,
        "signer": signer,
        "exp": exp,
    }
    payload = json.dumps({"exp": exp, "iss": ISSUER, **claims}).encode()
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    token = jws.serialize_compact(header, payload, key, registry=registry)
    return ".".join(_padded(part) for part in token.split(".")) if pad else token


def claims_for(role: str | None, name: str = "pat") -> dict:
    return {
        "sub": f"sub-{name}",
        "email": f"{name}@example.test",
        "name": name.title(),
        "groups": GROUPS_BY_ROLE.get(role, ["contractors"]) if role else ["contractors"],
    }


def alb_settings(key_server: KeyServer, **overrides: str) -> AuthSettings:
    return AuthSettings.from_env(
        {
            "AUTH_MODE": "alb",
            "SECRET_KEY": "s" * 40,
            "ALB_KEY_URL": key_server.url_template,
            "ALB_EXPECTED_SIGNER": SIGNER,
            "OIDC_ISSUER": ISSUER,
            "OIDC_CLIENT_ID": CLIENT,
            "ROLE_MAP": "mc-admins=admin,mc-operators=operator,mc-viewers=viewer",
            **overrides,
        }
    )


@pytest.fixture
def alb_app(key_server, records):
    return build_app(alb_settings(key_server), records)


def test_padding_quirk_is_present_in_test_tokens(signing_key):
    kid, key = signing_key
    token = alb_token(key, kid, claims_for("viewer"))

    assert "=" in token  # otherwise the tests below would not exercise the quirk
    assert "=" not in strip_padding(token)


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize("pad", [True, False], ids=["padded", "unpadded"])
def test_valid_header_signs_the_user_in_with_the_mapped_role(alb_app, signing_key, role, pad):
    kid, key = signing_key
    claims = claims_for(role)

    response = alb_app.test_client().get(
        "/revenue", headers={**HTML, ALB_DATA_HEADER: alb_token(key, kid, claims, pad=pad)}
    )

    assert response.status_code == 200
    assert response.json["email"] == claims["email"]
    assert response.json["role"] == role


def test_sign_in_is_audited_once_and_the_key_fetched_once(
    alb_app, signing_key, key_server, records
):
    kid, key = signing_key
    client = alb_app.test_client()
    token = alb_token(key, kid, claims_for("operator"))

    statuses = [client.get("/", headers={ALB_DATA_HEADER: token}).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert key_server.requests == [kid]
    assert [entry["event"] for entry in audit_events(records)] == ["sign-in"]


def test_missing_header_is_a_401(alb_app):
    client = alb_app.test_client()

    page = client.get("/", headers=HTML)
    script = client.post("/_dash-update-component", json={})

    assert page.status_code == 401
    assert "load balancer" in page.text
    assert script.status_code == 401
    assert script.is_json


@pytest.mark.parametrize(
    "case", ["wrong-signer", "expired", "tampered", "other-key", "unknown-kid", "hs256", "garbage"]
)
def test_invalid_header_is_a_401(alb_app, signing_key, key_server, case):
    kid, key = signing_key
    claims = claims_for("admin")
    if case == "wrong-signer":
        token = alb_token(key, kid, claims, signer=SIGNER.replace("mc/", "other/"))
    elif case == "expired":
        token = alb_token(key, kid, claims, expires_in=-600)
    elif case == "tampered":
        head, _body, signature = alb_token(key, kid, claims).split(".")
        forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "sub-root"}).encode())
        token = f"{head}.{forged.decode()}.{signature}"
    elif case == "other-key":
        token = alb_token(ECKey.generate_key("P-256"), kid, claims)
    elif case == "unknown-kid":
        token = alb_token(key, "0b1c2d3e-0000-4000-8000-000000000000", claims)
    elif case == "hs256":
        token = alb_token(OctKey.generate_key(256), kid, claims, alg="HS256")
    else:
        token = "not.a.jwt"

    response = alb_app.test_client().get("/", headers={**HTML, ALB_DATA_HEADER: token})

    assert response.status_code == 401
    assert "not valid" in response.text


def test_wrong_signer_never_reaches_the_key_endpoint(alb_app, signing_key, key_server):
    kid, key = signing_key
    token = alb_token(key, kid, claims_for("admin"), signer="arn:aws:elasticloadbalancing:x")

    alb_app.test_client().get("/", headers={ALB_DATA_HEADER: token})

    assert key_server.requests == []


@pytest.mark.parametrize("kid", ["../../etc/passwd", "a/b", "x?y=1", "", "abc\n"])
def test_kid_that_would_change_the_key_url_is_refused_before_fetching(
    alb_app, signing_key, key_server, kid
):
    _, key = signing_key
    token = alb_token(key, kid, claims_for("admin"))

    response = alb_app.test_client().get("/", headers={ALB_DATA_HEADER: token})

    assert response.status_code == 401
    assert key_server.requests == []


def test_an_unknown_kid_is_fetched_once_a_minute_not_on_every_request(
    key_server, signing_key, records
):
    _, key = signing_key
    now = [1_000.0]
    verifier = AlbVerifier(
        key_url_template=key_server.url_template, expected_signer=SIGNER, clock=lambda: now[0]
    )
    unknown = "0b1c2d3e-0000-4000-8000-000000000000"
    token = alb_token(key, unknown, claims_for("admin"))
    for _ in range(5):
        with pytest.raises(AlbTokenRejected):
            verifier.verify(token)
    assert key_server.requests == [unknown]
    now[0] += 61
    with pytest.raises(AlbTokenRejected):
        verifier.verify(token)
    assert key_server.requests == [unknown, unknown]


@pytest.mark.parametrize("path", ["/%5Cevil.example", "//evil.example/x", "/%09/evil.example"])
def test_error_page_links_stay_on_this_site(alb_app, path):
    response = alb_app.test_client().get(path, headers={**HTML, ALB_DATA_HEADER: "not.a.jwt"})

    assert response.status_code == 401
    links = re.findall(r"href=['\"]([^'\"]*)['\"]", response.text)
    assert links, response.text
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    assert not any("\\" in link or "evil" in link for link in links), links


def test_key_endpoint_down_is_a_503(signing_key, records):
    kid, key = signing_key
    settings = alb_settings_with_url(f"http://{LOOPBACK}:{free_port()}/{{kid}}")
    app = build_app(settings, records)

    response = app.test_client().get(
        "/", headers={**HTML, ALB_DATA_HEADER: alb_token(key, kid, claims_for("admin"))}
    )

    assert response.status_code == 503
    assert "Try again" in response.text


def alb_settings_with_url(url: str) -> AuthSettings:
    return AuthSettings.from_env(
        {
            "AUTH_MODE": "alb",
            "SECRET_KEY": "s" * 40,
            "ALB_KEY_URL": url,
            "ALB_EXPECTED_SIGNER": SIGNER,
            "ROLE_MAP": "mc-admins=admin",
        }
    )


def test_no_mapped_role_is_refused_with_claims_and_audited_once(alb_app, signing_key, records):
    kid, key = signing_key
    claims = claims_for(None, name="nia")
    client = alb_app.test_client()
    token = alb_token(key, kid, claims)

    first = client.get("/", headers={**HTML, ALB_DATA_HEADER: token})
    second = client.get("/", headers={**HTML, ALB_DATA_HEADER: token})

    assert first.status_code == second.status_code == 403
    assert claims["email"] in first.text and claims["groups"][0] in first.text
    assert [entry["event"] for entry in audit_events(records)] == ["refused"]


def test_viewer_cannot_write_operator_outputs_in_alb_mode(alb_app, signing_key):
    kid, key = signing_key
    body = {"output": "customer-table.data", "outputs": {"id": "customer-table", "property": "d"}}

    response = alb_app.test_client().post(
        "/_dash-update-component",
        json=body,
        headers={ALB_DATA_HEADER: alb_token(key, kid, claims_for("viewer"))},
    )

    assert response.status_code == 403


def test_logout_expires_the_load_balancer_cookies(key_server, signing_key, records):
    kid, key = signing_key
    logout_url = "https://idp.example.test/logout?client_id=alb-client"
    app = build_app(alb_settings(key_server, ALB_LOGOUT_URL=logout_url), records)
    client = app.test_client()
    headers = {ALB_DATA_HEADER: alb_token(key, kid, claims_for("viewer"))}
    client.get("/", headers=headers)

    response = client.post("/logout", headers=headers)

    assert response.status_code == 200
    assert response.headers["Refresh"] == f"0; url={logout_url}"
    expired = [h for h in response.headers.getlist("Set-Cookie") if "AWSELBAuthSessionCookie" in h]
    assert len(expired) == 4
    assert all("Max-Age=0" in header and "Secure" in header for header in expired)
    assert [entry["event"] for entry in audit_events(records)] == ["sign-in", "sign-out"]


def test_verifier_honours_leeway_with_its_clock(signing_key, key_server):
    kid, key = signing_key
    token = alb_token(key, kid, claims_for("viewer"), expires_in=60)
    now = time.time()
    verifier = AlbVerifier(
        key_url_template=key_server.url_template,
        expected_signer=SIGNER,
        leeway_seconds=30,
        clock=lambda: now + 60 + 20,
    )

    assert verifier.verify(token)["sub"] == "sub-pat"
    verifier.clock = lambda: now + 60 + 45
    with pytest.raises(AlbTokenRejected, match="expired"):
        verifier.verify(token)


def test_issuer_and_client_are_checked_when_configured(signing_key, key_server):
    kid, key = signing_key
    token = alb_token(key, kid, claims_for("viewer"))
    verifier = AlbVerifier(
        key_url_template=key_server.url_template,
        expected_signer=SIGNER,
        expected_issuer="https://another-idp.example.test",
    )

    with pytest.raises(AlbTokenRejected, match="issuer"):
        verifier.verify(token)
    verifier.expected_issuer, verifier.expected_client = ISSUER, "another-client"
    with pytest.raises(AlbTokenRejected, match="client"):
        verifier.verify(token)


def test_alb_mode_needs_a_signer(key_server):
    settings = alb_settings(key_server, ALB_EXPECTED_SIGNER="")

    assert any("ALB_EXPECTED_SIGNER" in problem for problem in settings.problems())
