"""A hung identity provider holds only its slots: while anonymous sign-ins wait on it,
``/healthz`` and signed-in users are answered.

The dashboard runs on gunicorn with one worker of four threads in ``AUTH_MODE=oidc``. The
real OpenID Provider (``oidc-provider`` on Node) is reached only through a ``FaultProxy``,
whose address is the issuer, so the test can make it swallow requests (a hang) and let
them go again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from auth.pages import RETRY_AFTER_SECONDS
from devtools.servers import ServerUnavailable
from tests.plugins.browser import DashboardServer, SampleLake
from tests.plugins.faults import FaultProxy, wait_until
from tests.plugins.oidc import ACCOUNTS, OidcProvider, browser_session, submit_login_form

OPERATOR = ACCOUNTS["otto"]
SLOTS = 2  # OIDC_MAX_CONCURRENT_CALLS of the worker under test (of its 4 threads)
LOGINS = 8  # concurrent anonymous sign-ins against the hung provider
# Far longer than the checks take, so the release, not the deadline, ends the hang.
DEADLINE_SECONDS = 30
HTML = {"Accept": "text/html"}


class ProxiedOidcProvider(OidcProvider):
    """The provider with a ``FaultProxy`` in front: its issuer is the proxy's address."""

    def __init__(self, app_base_url: str) -> None:
        super().__init__(app_base_url)
        self.proxy = FaultProxy(self.port)

    @property
    def issuer(self) -> str:
        return self.proxy.endpoint


class OneWorkerDashboard(DashboardServer):
    """One worker, so the test knows which per-worker cache and slots it is filling."""

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("-w") + 1] = "1"
        return command


@dataclass
class StallSite:
    dashboard: OneWorkerDashboard
    provider: ProxiedOidcProvider


@pytest.fixture(scope="module")
def stall_site(sample_lake: SampleLake) -> Iterator[StallSite]:
    dashboard = OneWorkerDashboard(sample_lake)
    try:
        provider = ProxiedOidcProvider(dashboard.url)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    provider.start_timeout_seconds = 60.0  # node starts slowly on a busy machine
    try:
        provider.proxy.start()
        provider.start()
        dashboard.extra_env.update(
            provider.env(
                SECRET_KEY=secrets.token_hex(32),
                # Discovery is re-read at every sign-in (one fetch at a time), so a sign-in
                # after the provider went away notices it.
                OIDC_CACHE_SECONDS="0",
                OIDC_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
                OIDC_MAX_CONCURRENT_CALLS=str(SLOTS),
            )
        )
        dashboard.start()
        yield StallSite(dashboard, provider)
    finally:
        dashboard.cleanup()
        provider.proxy.stop()
        provider.cleanup()


def anonymous_login(site: StallSite) -> requests.Response:
    return requests.get(
        f"{site.dashboard.url}/login", headers=HTML, allow_redirects=False, timeout=90
    )


def test_a_hung_provider_leaves_healthz_and_signed_in_users_answered(stall_site: StallSite):
    site, proxy = stall_site, stall_site.provider.proxy
    with browser_session() as signed_in:
        page = signed_in.get(f"{site.dashboard.url}/login", params={"next": "/"}, timeout=30)
        final = submit_login_form(signed_in, page, OPERATOR.login)
        assert final.status_code == 200 and final.url.startswith(site.dashboard.url), final.url

        # The provider goes away: the next sign-in drops the worker's copy of discovery.
        proxy.set_mode("refuse")
        gone = anonymous_login(site)
        assert gone.status_code == 503 and "Identity provider unavailable" in gone.text

        proxy.set_mode("blackhole")
        try:
            with ThreadPoolExecutor(LOGINS) as pool:
                logins = [pool.submit(anonymous_login, site) for _ in range(LOGINS)]
                # Those without a slot are told at once; the slot holders stay stuck.
                assert wait_until(
                    lambda: sum(login.done() for login in logins) == LOGINS - SLOTS, 30
                ), [login.done() for login in logins]

                health = requests.get(f"{site.dashboard.url}/healthz", timeout=10)
                own_page = signed_in.get(
                    f"{site.dashboard.url}/", allow_redirects=False, timeout=10
                )

                # Both answered while the provider was still hung.
                assert sum(not login.done() for login in logins) == SLOTS
                proxy.heal()  # the swallowed connections close: the stuck sign-ins end
                answers = [login.result(60) for login in logins]
        finally:
            proxy.heal()

    assert health.status_code == 200, health.text[:300]
    assert own_page.status_code == 200, own_page.text[:300]
    assert [answer.status_code for answer in answers] == [503] * LOGINS
    busy = [answer for answer in answers if "Identity provider busy" in answer.text]
    assert len(busy) == LOGINS - SLOTS
    assert all(answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS) for answer in answers)
    # And sign-in works again once the provider is back.
    with browser_session() as newcomer:
        page = newcomer.get(f"{site.dashboard.url}/login", timeout=30)
        final = submit_login_form(newcomer, page, OPERATOR.login)
        assert final.status_code == 200 and final.url.startswith(site.dashboard.url), final.url
