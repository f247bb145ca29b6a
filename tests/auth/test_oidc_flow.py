"""Sign-in through a real OpenID Provider (npm oidc-provider), driven without a browser."""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from auth.oidc import MAX_PENDING_SIGN_INS
from auth.session import SESSION_COOKIE_NAME
from tests.auth.conftest import DASH_RULES, audit_events
from tests.plugins.oidc import (
    ACCOUNTS,
    LoopbackApp,
    OidcProvider,
    browser_session,
    confirm_provider_logout,
    html_forms,
    sign_in,
)

SIGNED_IN_ACCOUNTS = [account for account in ACCOUNTS.values() if account.role]
NO_ROLE_ACCOUNT = next(account for account in ACCOUNTS.values() if account.role is None)
VIEWER = next(account for account in ACCOUNTS.values() if account.role == "viewer")
OPERATOR = next(account for account in ACCOUNTS.values() if account.role == "operator")
ADMIN = next(account for account in ACCOUNTS.values() if account.role == "admin")


def until_callback(
    http: requests.Session, app: LoopbackApp, login: str, next_path: str = "/"
) -> str:
    """Runs the flow up to the provider's redirect to our callback, and returns that URL."""
    page = http.get(app.url("/login"), params={"next": next_path}, timeout=10)
    forms = [form for form in html_forms(page.text) if form.fields.get("prompt") == "login"]
    assert forms, page.text[:300]
    response = http.post(
        requests.compat.urljoin(page.url, forms[0].action),
        data={**forms[0].fields, "login": login, "password": "x"},
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(10):
        location = requests.compat.urljoin(response.url, response.headers["Location"])
        if location.startswith(app.url("/auth/callback")):
            return location
        response = http.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected to the callback")


def is_signed_in(http: requests.Session, app: LoopbackApp) -> bool:
    response = http.get(app.url("/"), allow_redirects=False, timeout=10)
    return response.status_code == 200


def retry_link(response: requests.Response) -> bool:
    return "Try again" in response.text or "Sign in again" in response.text


def retry_href(response: requests.Response) -> str:
    match = re.search(r"href='([^']*)'[^>]*>(?:Try again|Sign in again)<", response.text)
    assert match, response.text
    return html.unescape(match.group(1))


@pytest.mark.parametrize("account", SIGNED_IN_ACCOUNTS, ids=lambda account: account.login)
def test_each_role_signs_in_and_lands_on_next(serve_oidc_app, loopback_app, http, records, account):
    serve_oidc_app()
    next_path = "/revenue?range=7d"

    final = sign_in(http, loopback_app, account.login, next_path=next_path)

    assert final.status_code == 200
    assert final.url == loopback_app.url(next_path)
    assert final.json()["email"] == account.email
    assert final.json()["role"] == account.role
    sign_ins = [entry for entry in audit_events(records) if entry["event"] == "sign-in"]
    assert [(entry["who"], entry["role"]) for entry in sign_ins] == [(account.email, account.role)]


def callback_response(final: requests.Response, app: LoopbackApp) -> requests.Response:
    """The app's answer to the provider's redirect, from a followed sign-in."""
    return next(r for r in final.history if r.url.startswith(app.url("/auth/callback")))


def test_session_cookie_is_httponly_lax_and_not_secure_over_http(
    serve_oidc_app, loopback_app, http
):
    serve_oidc_app()

    header = callback_response(sign_in(http, loopback_app, VIEWER.login), loopback_app).headers[
        "Set-Cookie"
    ]

    assert header.startswith(f"{SESSION_COOKIE_NAME}=")
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header
    assert "Expires=" in header  # permanent: absolute lifetime, not a browser-session cookie


def test_no_mapped_role_is_refused_with_the_claims_that_arrived(
    serve_oidc_app, loopback_app, http, records, caplog
):
    serve_oidc_app()
    caplog.set_level(logging.WARNING, logger="auth")

    final = sign_in(http, loopback_app, NO_ROLE_ACCOUNT.login)

    assert final.status_code == 403
    assert "no Mission Control role" in final.text
    for group in NO_ROLE_ACCOUNT.groups:
        assert group in final.text
    assert NO_ROLE_ACCOUNT.email in final.text
    assert retry_link(final)
    assert not is_signed_in(http, loopback_app)
    refused = [entry for entry in audit_events(records) if entry["event"] == "refused"]
    assert refused and refused[-1]["who"] == NO_ROLE_ACCOUNT.email
    assert refused[-1]["details"]["value"] == list(NO_ROLE_ACCOUNT.groups)
    assert any("maps to no role" in record.getMessage() for record in caplog.records)


def test_state_mismatch_is_a_400_page(serve_oidc_app, loopback_app, http, caplog):
    serve_oidc_app()
    caplog.set_level(logging.WARNING, logger="auth")
    callback = until_callback(http, loopback_app, VIEWER.login)
    query = parse_qs(urlsplit(callback).query)
    forged = loopback_app.url("/auth/callback") + f"?code={query['code'][0]}&state=forged-state"

    response = http.get(forged, timeout=10)

    assert response.status_code == 400
    assert "Sign-in expired" in response.text
    assert retry_link(response)
    assert not is_signed_in(http, loopback_app)
    assert any("state-mismatch" in record.getMessage() for record in caplog.records)


def test_replayed_callback_is_refused(serve_oidc_app, loopback_app, http):
    serve_oidc_app()
    callback = until_callback(http, loopback_app, VIEWER.login)
    cookie_before_callback = http.cookies.get(SESSION_COOKIE_NAME)

    first = http.get(callback, timeout=10)
    again_same_browser = http.get(callback, allow_redirects=False, timeout=10)
    with browser_session() as other:
        # Someone who copied the URL and the pre-callback cookie: the state is valid
        # there, so the provider must refuse the second use of the code.
        other.cookies.set(SESSION_COOKIE_NAME, cookie_before_callback)
        replay_with_old_cookie = other.get(callback, allow_redirects=False, timeout=10)
        signed_in_elsewhere = is_signed_in(other, loopback_app)

    assert first.status_code == 200
    assert again_same_browser.status_code == 400
    assert replay_with_old_cookie.status_code == 401
    assert "refused to complete" in replay_with_old_cookie.text
    assert not signed_in_elsewhere


def test_wrong_issuer_configured_is_a_503_page(serve_oidc_app, oidc_provider, loopback_app, http):
    # Same provider, issuer written with a trailing slash: discovery works, names differ.
    serve_oidc_app(OIDC_ISSUER=oidc_provider.issuer + "/")

    response = http.get(loopback_app.url("/login"), timeout=10)

    assert response.status_code == 503
    assert "misconfigured" in response.text
    assert response.url.startswith(loopback_app.base_url)  # never sent to the provider


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("iss", "'iss'"),
        ("aud", "'aud'"),
        ("aud-multi-no-azp", "'azp'"),
        ("azp-other", "'a"),  # refused for the untrusted audience or the azp, either way
        ("aud-untrusted-extra", "'aud'"),
        ("expired", "ExpiredTokenError"),
        ("issued-in-future", "issued in the future"),
        ("nonce", "'nonce'"),
        ("no-nonce", "'nonce'"),
        ("signature", "BadSignatureError"),
        ("alg-none", "'none'"),
        ("hs256", "'HS256'"),
        ("unknown-key", "key-nobody-published"),
        ("no-id-token", "token response keys"),
    ],
)
def test_invalid_id_token_is_refused(
    serve_oidc_app, oidc_provider, loopback_app, http, records, caplog, fault, cause
):
    serve_oidc_app()
    caplog.set_level(logging.WARNING, logger="auth")
    oidc_provider.set_fault(fault)

    final = sign_in(http, loopback_app, ADMIN.login)

    assert final.status_code == 401
    assert final.url.startswith(loopback_app.url("/auth/callback"))
    assert retry_link(final)
    assert not is_signed_in(http, loopback_app)
    failures = [entry for entry in audit_events(records) if entry["event"] == "sign-in-failed"]
    assert failures and failures[-1]["details"]["reason"] in ("token-rejected", "no-id-token")
    assert cause in failures[-1]["details"]["detail"]
    assert any("sign-in failed" in record.getMessage() for record in caplog.records)


def test_a_trusted_extra_audience_is_accepted(serve_oidc_app, oidc_provider, loopback_app, http):
    serve_oidc_app(OIDC_TRUSTED_AUDIENCES="other-client")
    oidc_provider.set_fault("aud-untrusted-extra")

    final = sign_in(http, loopback_app, ADMIN.login)

    assert final.status_code == 200
    assert is_signed_in(http, loopback_app)


def test_leeway_accepts_a_token_within_the_allowed_skew(
    serve_oidc_app, oidc_provider, loopback_app, http
):
    # The "expired" fault backdates exp by an hour; two hours of leeway let it through.
    serve_oidc_app(OIDC_LEEWAY_SECONDS="7200")
    oidc_provider.set_fault("expired")

    final = sign_in(http, loopback_app, ADMIN.login)

    assert final.status_code == 200
    assert final.json()["role"] == ADMIN.role


def test_roles_come_from_userinfo_when_the_id_token_lacks_them(
    serve_oidc_app, oidc_provider, loopback_app, http
):
    serve_oidc_app()
    oidc_provider.set_fault("no-groups")

    final = sign_in(http, loopback_app, OPERATOR.login)

    assert final.status_code == 200
    assert final.json()["role"] == OPERATOR.role


def test_user_cancelling_at_the_provider_is_a_403_page(serve_oidc_app, loopback_app, http):
    serve_oidc_app()
    page = http.get(loopback_app.url("/login"), timeout=10)
    cancel = next(
        link for link in page.text.split('href="')[1:] if link.split('"')[0].endswith("/abort")
    ).split('"')[0]

    response = http.get(requests.compat.urljoin(page.url, cancel), timeout=10)

    assert response.url.startswith(loopback_app.url("/auth/callback"))
    assert "error=access_denied" in response.url
    assert response.status_code == 403
    assert "cancelled" in response.text
    assert retry_link(response)


def test_unreachable_provider_at_login_is_a_503_page(serve_oidc_app, loopback_app, http):
    from devtools.servers import LOOPBACK, free_port

    serve_oidc_app(OIDC_ISSUER=f"http://{LOOPBACK}:{free_port()}")

    response = http.get(loopback_app.url("/login"), params={"next": "/kpis"}, timeout=10)

    assert response.status_code == 503
    assert "cannot be reached" in response.text
    # The retry link keeps where the user was going.
    assert parse_qs(urlsplit(retry_href(response)).query)["next"] == ["/kpis"]


def test_provider_stopping_mid_sign_in_is_a_503_page(
    serve_oidc_app, private_oidc_provider: OidcProvider, loopback_app, http, caplog
):
    serve_oidc_app(provider=private_oidc_provider)
    caplog.set_level(logging.WARNING, logger="auth")
    callback = until_callback(http, loopback_app, VIEWER.login)
    private_oidc_provider.stop()

    response = http.get(callback, timeout=30)

    assert response.status_code == 503
    assert retry_link(response)
    assert any("provider-unreachable" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
    ],
)
def test_next_never_leaves_the_site(serve_oidc_app, loopback_app, http, target):
    serve_oidc_app()

    final = sign_in(http, loopback_app, VIEWER.login, next_path=target)

    assert callback_response(final, loopback_app).headers["Location"] == "/"
    assert final.status_code == 200
    assert final.url == loopback_app.url("/")


def test_session_cookie_is_replaced_at_sign_in(serve_oidc_app, loopback_app, http):
    serve_oidc_app()
    http.get(loopback_app.url("/login"), timeout=10)
    before = http.cookies.get(SESSION_COOKIE_NAME)
    assert before  # the anonymous session holding state, nonce and PKCE verifier

    sign_in(http, loopback_app, VIEWER.login)
    after = http.cookies.get(SESSION_COOKIE_NAME)

    assert after and after != before
    with browser_session() as attacker:
        attacker.cookies.set(SESSION_COOKIE_NAME, before)
        assert not is_signed_in(attacker, loopback_app)
    assert is_signed_in(http, loopback_app)


def test_viewer_crafting_an_operator_callback_is_refused(
    serve_oidc_app, loopback_app, http, records
):
    serve_oidc_app()
    sign_in(http, loopback_app, VIEWER.login)
    protected = next(prefix for prefix, role in DASH_RULES.items() if role == "operator")
    body = {
        "output": f"{protected}table.data",
        "outputs": {"id": f"{protected}table", "property": "data"},
        "inputs": [{"id": "customer-picker", "property": "value", "value": "c-001"}],
        "changedPropIds": ["customer-picker.value"],
    }

    response = http.post(loopback_app.url("/_dash-update-component"), json=body, timeout=10)

    assert response.status_code == 403
    assert response.json()["needed"] == "operator"
    refused = [entry for entry in audit_events(records) if entry["event"] == "refused"]
    assert refused and refused[-1]["who"] == VIEWER.email


def test_operator_may_run_the_same_callback(serve_oidc_app, loopback_app, http):
    serve_oidc_app()
    sign_in(http, loopback_app, OPERATOR.login)
    protected = next(prefix for prefix, role in DASH_RULES.items() if role == "operator")
    body = {
        "output": f"{protected}table.data",
        "outputs": {"id": f"{protected}table", "property": "data"},
    }

    response = http.post(loopback_app.url("/_dash-update-component"), json=body, timeout=10)

    assert response.status_code == 200


def test_export_needs_operator_and_is_audited(serve_oidc_app, loopback_app, records):
    serve_oidc_app()
    with browser_session() as viewer, browser_session() as operator:
        sign_in(viewer, loopback_app, VIEWER.login)
        sign_in(operator, loopback_app, OPERATOR.login)
        refused = viewer.get(loopback_app.url("/export.csv?view=revenue"), timeout=10)
        exported = operator.get(loopback_app.url("/export.csv?view=revenue&week=12"), timeout=10)

    assert refused.status_code == 403
    assert exported.status_code == 200
    assert exported.headers["Content-Type"].startswith("text/csv")
    exports = [entry for entry in audit_events(records) if entry["event"] == "export"]
    assert len(exports) == 1
    assert exports[0]["who"] == OPERATOR.email
    assert exports[0]["details"]["view"] == "revenue"
    assert exports[0]["details"]["filters"] == {"view": "revenue", "week": "12"}
    assert exports[0]["details"]["rows"] == len(exported.text.strip().splitlines()) - 1


def test_admin_pages_show_claims_and_audit_only_to_admins(serve_oidc_app, loopback_app):
    serve_oidc_app()
    with browser_session() as admin, browser_session() as operator:
        sign_in(operator, loopback_app, OPERATOR.login)
        sign_in(admin, loopback_app, ADMIN.login)
        whoami = admin.get(loopback_app.url("/auth/whoami"), timeout=10)
        audit_page = admin.get(loopback_app.url("/admin/audit"), timeout=10)
        operator_whoami = operator.get(loopback_app.url("/auth/whoami"), timeout=10)
        operator_audit = operator.get(loopback_app.url("/admin/audit"), timeout=10)

    assert whoami.status_code == 200
    assert ADMIN.email in whoami.text
    for group in ADMIN.groups:
        assert group in whoami.text
    assert ">admin<" in whoami.text
    assert audit_page.status_code == 200
    assert OPERATOR.email in audit_page.text and "sign-in" in audit_page.text
    assert operator_whoami.status_code == 403
    assert operator_audit.status_code == 403


def test_logout_ends_the_provider_session_too(serve_oidc_app, loopback_app, http, records):
    serve_oidc_app()
    sign_in(http, loopback_app, ADMIN.login)

    asked = http.get(loopback_app.url("/logout"), timeout=10)
    assert is_signed_in(http, loopback_app), "GET /logout only asks"
    handed_off = http.post(loopback_app.url("/logout"), timeout=10)
    assert not is_signed_in(http, loopback_app)
    # The page moves on to the provider by itself (a form POST may not redirect off-site).
    delay, _, target = handed_off.headers["Refresh"].partition("; url=")
    assert delay == "0" and target in handed_off.text.replace("&amp;", "&")
    to_provider = http.get(target, timeout=10)
    logout_request = parse_qs(urlsplit(to_provider.url).query)
    signed_out = confirm_provider_logout(http, to_provider)
    login_again = http.get(loopback_app.url("/login"), timeout=10)

    assert "Sign out?" in asked.text
    assert logout_request["id_token_hint"]
    assert logout_request["post_logout_redirect_uri"] == [loopback_app.url("/signed-out")]
    assert signed_out.status_code == 200
    assert signed_out.url.startswith(loopback_app.url("/signed-out"))
    assert "signed out" in signed_out.text
    assert not is_signed_in(http, loopback_app)
    # The provider asks for credentials again: its session is gone as well.
    assert any(form.fields.get("prompt") == "login" for form in html_forms(login_again.text))
    sign_outs = [entry for entry in audit_events(records) if entry["event"] == "sign-out"]
    assert [entry["who"] for entry in sign_outs] == [ADMIN.email]


def test_without_provider_logout_the_provider_would_sign_in_silently(
    serve_oidc_app, loopback_app, http
):
    # The control for the test above: dropping only the app cookie leaves the provider
    # session alive, and /login comes straight back signed in, with no form.
    serve_oidc_app()
    sign_in(http, loopback_app, ADMIN.login)
    http.cookies.set(SESSION_COOKIE_NAME, None)

    again = http.get(loopback_app.url("/login"), timeout=10)

    assert again.url == loopback_app.url("/")
    assert again.json()["email"] == ADMIN.email


def test_repeated_sign_in_clicks_keep_the_cookie_small(serve_oidc_app, loopback_app, http):
    app = serve_oidc_app()
    serializer = app.session_interface.get_signing_serializer(app)
    pending = []
    for _ in range(8):
        http.get(loopback_app.url("/login"), timeout=10)
        contents = serializer.loads(http.cookies.get(SESSION_COOKIE_NAME))
        pending.append(sum(key.startswith("_state_") for key in contents))

    assert pending == [min(clicks, MAX_PENDING_SIGN_INS) for clicks in range(1, 9)]
    assert sign_in(http, loopback_app, VIEWER.login).status_code == 200
