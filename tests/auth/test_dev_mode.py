"""AUTH_MODE=dev: a fixed local user, only for requests from loopback."""

from __future__ import annotations

from auth.settings import AuthSettings
from tests.auth.conftest import build_app

HTML = {"Accept": "text/html"}


def dev_app():
    settings = AuthSettings.from_env({"AUTH_MODE": "dev", "DEV_ROLE": "operator"})
    return build_app(settings, None)


def test_loopback_requests_get_the_dev_user():
    response = dev_app().test_client().get("/", headers=HTML)

    assert response.status_code == 200
    assert response.json["role"] == "operator"


def test_other_clients_are_refused():
    client = dev_app().test_client()

    refused = client.get("/", headers=HTML, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    health = client.get("/healthz", environ_base={"REMOTE_ADDR": "10.1.2.3"})

    assert refused.status_code == 403
    assert health.status_code == 200


def test_login_and_logout_do_nothing_harmful():
    client = dev_app().test_client()

    login = client.get("/login?next=/revenue")
    asks = client.get("/logout")
    logout = client.post("/logout")

    assert login.location == "/revenue"
    assert asks.status_code == 200 and "method='post'" in asks.text
    assert logout.location == "/signed-out"


def test_get_logout_only_asks():
    client = dev_app().test_client()
    # What a link or a meta refresh on another site makes the browser send.
    asks = client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert asks.status_code == 200
    assert "Sign out?" in asks.text and "action='/logout'" in asks.text
    # The POST it offers is refused cross-site by the app's security layer: tests/security.
