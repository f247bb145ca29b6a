"""Single sign-on end to end: the dashboard under gunicorn, the real provider, headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.plugins.browser import VIEWPORT, DashboardServer, SampleLake, wait_for_panels
from tests.plugins.oidc import ACCOUNTS, OidcProvider

pytestmark = pytest.mark.browser

ADMIN = next(account for account in ACCOUNTS.values() if account.role == "admin")
VIEWER = next(account for account in ACCOUNTS.values() if account.role == "viewer")
# A ceiling, not a measurement: the shared 2-core machine can be slow to draw every panel.
PANELS_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sso_dashboard(sample_lake: SampleLake) -> Iterator[tuple[DashboardServer, OidcProvider]]:
    """The dashboard in AUTH_MODE=oidc, and a provider whose client points at it."""
    dashboard = DashboardServer(sample_lake)
    provider = OidcProvider(dashboard.url)
    try:
        provider.start()
        dashboard.extra_env.update(provider.env())
        dashboard.start()
        yield dashboard, provider
    finally:
        dashboard.cleanup()
        provider.cleanup()


@pytest.fixture
def sso_page(browser, sso_dashboard):
    dashboard, _ = sso_dashboard
    context = browser.new_context(viewport=VIEWPORT, base_url=dashboard.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def provider_sign_in(page, login: str) -> None:
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any-password")
    page.get_by_role("button", name="Sign-in").click()


def test_sign_in_use_the_dashboard_and_sign_out_everywhere(sso_page, sso_dashboard):
    dashboard, provider = sso_dashboard
    page = sso_page

    page.goto("/revenue")
    expect(page).to_have_url(re.compile(re.escape(provider.issuer)))
    provider_sign_in(page, ADMIN.login)
    expect(page).to_have_url(f"{dashboard.url}/revenue")  # back where the user was going
    page.goto("/")
    wait_for_panels(page, timeout_ms=PANELS_TIMEOUT_MS)

    page.goto("/auth/whoami")
    expect(page.locator("strong", has_text="admin")).to_be_visible()
    expect(page.locator("body")).to_contain_text(ADMIN.email)

    page.goto("/")
    expect(page.locator(".mc-role")).to_have_text("admin")  # the header shows the role
    page.get_by_role("link", name="Sign out").click()  # the header's link asks first
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_role("button", name="Yes, sign me out").click()  # the provider asks too
    expect(page).to_have_url(re.compile(re.escape(f"{dashboard.url}/signed-out")))
    expect(page.locator("h1")).to_have_text("Signed out")

    # Both sessions are gone: the dashboard sends us to the provider, which asks again.
    page.goto("/")
    expect(page).to_have_url(re.compile(re.escape(provider.issuer)))
    expect(page.locator("input[name=login]")).to_be_visible()


def test_viewer_is_refused_the_admin_pages(sso_page, sso_dashboard):
    dashboard, _ = sso_dashboard
    page = sso_page

    page.goto("/")
    provider_sign_in(page, VIEWER.login)
    expect(page).to_have_url(f"{dashboard.url}/")
    wait_for_panels(page, timeout_ms=PANELS_TIMEOUT_MS)
    response = page.goto("/admin/audit")

    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
