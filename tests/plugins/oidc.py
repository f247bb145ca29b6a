"""A real OpenID Provider for the auth tests, and an HTTP client that signs in through it.

``OidcProvider`` runs ``devtools/server_files/oidc_provider.js`` (npm ``oidc-provider`` 8.x)
on a loopback port with one static confidential client and the accounts in ``ACCOUNTS``.
``LoopbackApp`` serves a Flask app on a fixed loopback port (the client's registered
redirect URI points there) and lets each test swap in its own app.

``sign_in()`` drives the whole code flow with ``requests``: the app's ``/login``, the
provider's development login form, the callback, back to the app.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from devtools.servers import (
    INSTALL_HINT,
    LOOPBACK,
    NODE_SERVERS_DIR,
    ServerProcess,
    ServerUnavailable,
    free_port,
)

PROVIDER_SCRIPT = NODE_SERVERS_DIR / "oidc_provider.js"
CLIENT_ID = "mission-control-test"
ROLE_MAP = "mc-admins=admin,mc-operators=operator,mc-viewers=viewer"
SCOPES = "openid email profile groups"


@dataclass(frozen=True)
class Account:
    login: str
    email: str
    name: str
    groups: tuple[str, ...]
    role: str | None  # what ROLE_MAP should resolve these groups to

    def claims(self) -> dict:
        return {
            "email": self.email,
            "email_verified": True,
            "name": self.name,
            "groups": list(self.groups),
        }


ACCOUNTS = {
    account.login: account
    for account in (
        Account("ada", "ada@example.test", "Ada Admin", ("staff", "mc-admins"), "admin"),
        Account("otto", "otto@example.test", "Otto Operator", ("mc-operators",), "operator"),
        Account("vera", "vera@example.test", "Vera Viewer", ("mc-viewers",), "viewer"),
        Account("nora", "nora@example.test", "Nora Nobody", ("contractors",), None),
    )
}


class OidcProvider(ServerProcess):
    """``oidc-provider`` with a static client whose redirect URIs live under ``app_base_url``."""

    name = "oidc-provider"
    start_timeout_seconds = 30.0

    def __init__(self, app_base_url: str) -> None:
        node = shutil.which("node")
        if node is None:
            raise ServerUnavailable(f"node (20+) not found on PATH: {INSTALL_HINT}")
        if not (NODE_SERVERS_DIR / "node_modules" / "oidc-provider").is_dir():
            raise ServerUnavailable(f"npm package oidc-provider is not installed: {INSTALL_HINT}")
        self.node = node
        self.app_base_url = app_base_url.rstrip("/")
        self.client_secret = secrets.token_urlsafe(32)
        super().__init__()
        self.port = free_port()

    @property
    def issuer(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        return [self.node, str(PROVIDER_SCRIPT)]

    def child_env(self) -> dict[str, str]:
        client = {
            "client_id": CLIENT_ID,
            "client_secret": self.client_secret,
            "redirect_uris": [f"{self.app_base_url}/auth/callback"],
            "post_logout_redirect_uris": [f"{self.app_base_url}/signed-out"],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        return {
            **super().child_env(),
            "OIDC_PORT": str(self.port),
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENTS": json.dumps([client]),
            "OIDC_ACCOUNTS": json.dumps({login: a.claims() for login, a in ACCOUNTS.items()}),
        }

    def answers(self) -> bool:
        try:
            response = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1.0)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def set_fault(self, mode: str | None) -> None:
        """Tamper with the ID token of the next token response (see oidc_provider.js)."""
        response = requests.post(f"{self.issuer}/__test__/fault", json={"mode": mode}, timeout=5)
        response.raise_for_status()

    def env(self, **overrides: str) -> dict[str, str]:
        """The app's environment for signing in through this provider."""
        return {
            "AUTH_MODE": "oidc",
            "SECRET_KEY": secrets.token_hex(32),
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": self.client_secret,
            "OIDC_SCOPES": SCOPES,
            "ROLE_MAP": ROLE_MAP,
            **overrides,
        }


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackApp:
    """A threaded WSGI server on one loopback port; ``serve(app)`` swaps what it serves."""

    def __init__(self) -> None:
        self.port = free_port()
        self.app: Callable | None = None
        self._server: BaseWSGIServer = make_server(
            LOOPBACK, self.port, self._dispatch, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def serve(self, app: Callable | None) -> None:
        self.app = app

    def _dispatch(self, environ: dict, start_response: Callable) -> object:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no app mounted"]
        return self.app(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.by_id: dict[str, Form] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            form = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.forms.append(form)
            if "id" in attributes:
                self.by_id[attributes["id"]] = form
        elif tag == "input" and "name" in attributes:
            owner = self.by_id.get(attributes.get("form", "")) or (
                self.forms[-1] if self.forms else None
            )
            if owner is not None:
                owner.fields[attributes["name"]] = attributes.get("value", "")


def html_forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def browser_session() -> requests.Session:
    """A requests session that asks for HTML like a browser's page loads do."""
    http = requests.Session()
    http.headers["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
    return http


def submit_login_form(http: requests.Session, page: requests.Response, login: str):
    """Post the provider's development login form on ``page``; follows redirects."""
    forms = [form for form in html_forms(page.text) if form.fields.get("prompt") == "login"]
    assert forms, f"no login form at {page.url}: {page.text[:300]}"
    form = forms[0]
    fields = {**form.fields, "login": login, "password": "any-password"}
    return http.post(urljoin(page.url, form.action), data=fields, timeout=10)


def sign_in(
    http: requests.Session, app: LoopbackApp, login: str, next_path: str = "/"
) -> requests.Response:
    """The whole code flow for ``login``: returns the app's final response."""
    page = http.get(app.url("/login"), params={"next": next_path}, timeout=10)
    if page.url.startswith(app.base_url):
        return page  # already signed in at the provider, or the app refused early
    return submit_login_form(http, page, login)


def confirm_provider_logout(http: requests.Session, page: requests.Response) -> requests.Response:
    """Press "Yes, sign me out" on the provider's end-session page."""
    forms = [form for form in html_forms(page.text) if "xsrf" in form.fields]
    assert forms, f"no logout form at {page.url}: {page.text[:300]}"
    fields = {**forms[0].fields, "logout": "yes"}
    return http.post(urljoin(page.url, forms[0].action), data=fields, timeout=10)


def _start(server: ServerProcess) -> None:
    try:
        server.start()
    except ServerUnavailable as exc:
        server.cleanup()
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def loopback_app() -> Iterator[LoopbackApp]:
    app = LoopbackApp()
    yield app
    app.close()


@pytest.fixture(scope="session")
def oidc_provider_session(loopback_app: LoopbackApp) -> Iterator[OidcProvider]:
    try:
        provider = OidcProvider(loopback_app.base_url)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    _start(provider)
    yield provider
    provider.cleanup()


@pytest.fixture
def oidc_provider(oidc_provider_session: OidcProvider) -> Iterator[OidcProvider]:
    """The shared provider, with no fault pending before or after the test."""
    oidc_provider_session.set_fault(None)
    yield oidc_provider_session
    with contextlib.suppress(requests.RequestException):
        oidc_provider_session.set_fault(None)


@pytest.fixture
def private_oidc_provider(loopback_app: LoopbackApp) -> Iterator[OidcProvider]:
    """A provider of the test's own, which the test may stop."""
    try:
        provider = OidcProvider(loopback_app.base_url)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    _start(provider)
    yield provider
    provider.cleanup()
