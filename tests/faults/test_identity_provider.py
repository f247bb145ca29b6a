"""The identity provider goes down: people already signed in carry on, new sign-ins get a
clear "unavailable" page (not a browser error on the provider's dead host), and sign-in
works again once the provider is back.

The dashboard runs on gunicorn with two workers in ``AUTH_MODE=oidc`` against a real
OpenID Provider (``oidc-provider`` on Node) of this module's own, which the test stops.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from devtools.servers import ServerUnavailable
from tests.faults.panels import CallbackLog
from tests.integrity.checks import assert_reconciled
from tests.plugins.browser import VIEWPORT, DashboardServer, SampleLake, wait_for_panels
from tests.plugins.oidc import ACCOUNTS, OidcProvider

pytestmark = pytest.mark.browser

OPERATOR = ACCOUNTS["otto"]
# New sign-ins tried while the provider is down: enough to reach both workers.
NEW_SIGN_INS = 4


@dataclass
class OidcSite:
    dashboard: DashboardServer
    provider: OidcProvider


@pytest.fixture(scope="module")
def oidc_site(sample_lake: SampleLake) -> Iterator[OidcSite]:
    dashboard = DashboardServer(sample_lake)
    try:
        provider = OidcProvider(dashboard.url)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    provider.start_timeout_seconds = 60.0  # node starts slowly on a busy machine
    try:
        provider.start()
        dashboard.extra_env.update(
            # Discovery re-read at every sign-in (one fetch at a time): new sign-ins notice
            # at once that the provider stopped, instead of after OIDC_CACHE_SECONDS.
            provider.env(SECRET_KEY=secrets.token_hex(32), OIDC_CACHE_SECONDS="0")
        )
        dashboard.start()
        yield OidcSite(dashboard, provider)
    finally:
        dashboard.cleanup()
        provider.cleanup()


def _sign_in(context, site: OidcSite):
    page = context.new_page()
    page.goto("/")
    page.fill("input[name=login]", OPERATOR.login)
    page.fill("input[name=password]", "any-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.dashboard.url}/**")
    wait_for_panels(page)
    return page


def test_provider_down_signed_in_users_carry_on_and_new_sign_ins_get_a_clear_page(
    browser, oidc_site: OidcSite, sample_lake: SampleLake
):
    signed_in = browser.new_context(viewport=VIEWPORT, base_url=oidc_site.dashboard.url)
    signed_in.set_default_timeout(30_000)
    try:
        page = _sign_in(signed_in, oidc_site)
        log = CallbackLog(page)

        oidc_site.provider.stop()
        down = time.monotonic()
        # Carry on: another page, its panels, and a few refreshes of them.
        page.goto("/revenue")
        wait_for_panels(page)
        page.wait_for_timeout(3000)
        calls = log.since(down)
        assert calls, "no callbacks after the provider stopped"
        assert {call.status for call in calls} <= {200, 204}, calls
        assert page.url.startswith(oidc_site.dashboard.url)

        for _ in range(NEW_SIGN_INS):
            newcomer = browser.new_context(viewport=VIEWPORT, base_url=oidc_site.dashboard.url)
            try:
                attempt = newcomer.new_page()
                response = attempt.goto("/revenue")
                assert response is not None
                assert response.status == 503, (response.status, attempt.url)
                assert response.headers.get("retry-after"), response.headers
                assert attempt.url.startswith(oidc_site.dashboard.url + "/login")
                text = attempt.inner_text("body")
                assert "Identity provider unavailable" in text, text[:500]
                retry = attempt.get_by_role("link", name="Try again")
                href = retry.get_attribute("href") or ""
                assert parse_qs(urlsplit(href).query).get("next") == ["/revenue"], href
            finally:
                newcomer.close()

        oidc_site.provider.start()
        back = browser.new_context(viewport=VIEWPORT, base_url=oidc_site.dashboard.url)
        back.set_default_timeout(30_000)
        try:
            _sign_in(back, oidc_site)
        finally:
            back.close()
    finally:
        signed_in.close()
    assert_reconciled(sample_lake.stores())
