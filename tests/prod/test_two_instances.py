"""Horizontal scale: two instances behind a round-robin proxy behave as one.

Two gunicorn instances (the image's command) serve the same local lake and state with
the same SECRET_KEY, behind nginx on loopback, which alternates them per request and says
which one answered (``X-Upstream``). Sign-in runs through a real OpenID Provider, so the
session cookie, and the sign-in state before it, must work on whichever instance gets
the next request. Exports and Dash callbacks must answer the same on both.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from devtools.servers import LOOPBACK, ServerUnavailable, free_port
from tests.plugins.browser import VIEWPORT, SampleLake
from tests.plugins.oidc import ACCOUNTS, OidcProvider, browser_session, sign_in
from tests.prod.processes import LoopbackProcess, gunicorn_instance, nginx_proxy

ADMIN = ACCOUNTS["ada"]
UPSTREAM_HEADER = "X-Upstream"
REQUEST_ID_HEADER = "X-Request-Id"
EXPORT_PATH = "/export/fleet-daily.csv?range=7d"


@dataclass
class Site:
    """The proxy's address, in the shape ``sign_in`` takes."""

    base_url: str

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))


@dataclass
class Cluster:
    proxy: LoopbackProcess
    instances: list[LoopbackProcess]
    provider: OidcProvider

    @property
    def site(self) -> Site:
        return Site(self.proxy.url)

    @property
    def upstreams(self) -> set[str]:
        return {f"{LOOPBACK}:{instance.port}" for instance in self.instances}


@pytest.fixture(scope="module")
def cluster(
    sample_lake: SampleLake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("two-instances")
    proxy_port = free_port()
    # The provider's registered redirect URI is the proxy's, as the ALB's would be.
    try:
        provider = OidcProvider(f"http://{LOOPBACK}:{proxy_port}")
        provider.start_timeout_seconds = 60.0  # node starts slowly on a busy machine
        provider.start()
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    shared = {
        **provider.env(SECRET_KEY=secrets.token_hex(32)),
        "DATA_BACKEND": "local",
        "LAKE_ROOT": str(sample_lake.settings.lake_root),
        "STATE_DB": str(sample_lake.settings.state_db),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        # nginx is the one proxy in front: trust its X-Forwarded-For/-Proto.
        "FORWARDED_ALLOW_IPS": LOOPBACK,
        "PROXY_FIX_X_FOR": "1",
        "PROXY_FIX_X_PROTO": "1",
        "REFRESH_CHOICES_MS": "1000,5000",
        "REFRESH_DEFAULT_MS": "1000",
        "REFRESH_FLOOR_MS": "800",
    }
    instances = [gunicorn_instance(name, root / name, shared) for name in ("a", "b")]
    proxy = nginx_proxy(root / "nginx", [i.port for i in instances], port=proxy_port)
    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_ready()
        proxy.start()
        yield Cluster(proxy, instances, provider)
    finally:
        proxy.stop()
        for instance in instances:
            instance.stop()
        provider.cleanup()


def upstream_of(response: requests.Response) -> str:
    return response.headers.get(UPSTREAM_HEADER, "")


def signed_in_session(cluster: Cluster) -> requests.Session:
    http = browser_session()
    final = sign_in(http, cluster.site, ADMIN.login)
    assert final.status_code == 200, final.text[:500]
    assert final.url.startswith(cluster.proxy.url), final.url
    return http


# ------------------------------------------------------------------------------ over HTTP


def test_both_instances_answer_through_the_proxy(cluster: Cluster) -> None:
    served = Counter()
    request_ids = set()
    for _ in range(8):
        # A new connection each time: the proxy picks the next instance per request.
        answer = requests.get(
            f"{cluster.proxy.url}/healthz", headers={"Connection": "close"}, timeout=10
        )
        assert answer.status_code == 200
        served[upstream_of(answer)] += 1
        request_ids.add(answer.headers.get(REQUEST_ID_HEADER))
    assert set(served) == cluster.upstreams, served
    assert None not in request_ids and len(request_ids) == 8, "every answer has its own id"
    for instance in cluster.instances:
        ready = requests.get(f"{instance.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"


def test_a_session_from_one_instance_works_on_the_other(cluster: Cluster) -> None:
    anonymous = requests.get(f"{cluster.proxy.url}/", allow_redirects=False, timeout=10)
    assert anonymous.status_code in (302, 303, 401), "the check below would prove nothing"
    http = signed_in_session(cluster)
    for instance in cluster.instances:
        page = http.get(f"{instance.url}/", allow_redirects=False, timeout=10)
        assert page.status_code == 200, f"{instance.name}: {page.status_code}"
    served = Counter()
    for _ in range(6):
        page = http.get(
            f"{cluster.proxy.url}/", headers={"Connection": "close"}, allow_redirects=False
        )
        assert page.status_code == 200
        served[upstream_of(page)] += 1
    assert set(served) == cluster.upstreams, served


def test_exports_answer_the_same_on_both_instances(cluster: Cluster) -> None:
    http = signed_in_session(cluster)
    bodies = {}
    for instance in cluster.instances:
        answer = http.get(f"{instance.url}{EXPORT_PATH}", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        assert int(answer.headers["X-Export-Rows"]) > 0
        bodies[instance.name] = answer.content
    assert bodies["a"] == bodies["b"]
    served = set()
    for _ in range(4):
        answer = http.get(
            f"{cluster.proxy.url}{EXPORT_PATH}", headers={"Connection": "close"}, timeout=30
        )
        assert answer.content == bodies["a"]
        served.add(upstream_of(answer))
    assert served == cluster.upstreams


# ------------------------------------------------------------------------------ in a browser


@pytest.mark.browser
def test_one_browser_session_uses_both_instances(
    cluster: Cluster,
    browser,
) -> None:
    context = browser.new_context(viewport=VIEWPORT, base_url=cluster.proxy.url)
    context.set_default_timeout(20_000)
    callbacks: list[tuple[str, int, str]] = []  # (upstream, status, request body)
    app_errors: list[str] = []

    def on_response(response) -> None:
        if not response.url.startswith(cluster.proxy.url):
            return
        if response.status >= 400:
            app_errors.append(f"{response.status} {response.url}")
        # Dash 4 adds a query string to callback requests.
        if urlsplit(response.url).path == "/_dash-update-component":
            callbacks.append(
                (
                    response.headers.get("x-upstream", ""),
                    response.status,
                    response.request.post_data,
                )
            )

    page = context.new_page()
    page.on("response", on_response)
    try:
        page.goto("/")
        # The provider's development sign-in form; consent is granted by the test provider.
        page.fill("input[name=login]", ADMIN.login)
        page.fill("input[name=password]", "any-password")
        page.click("button[type=submit]")
        page.wait_for_url(f"{cluster.proxy.url}/**")
        page.wait_for_selector(".mc-header")
        for path in ("/revenue", "/"):
            page.goto(path)
            page.wait_for_selector(".mc-header")
        # Polls every second keep callbacks coming until both instances have answered some.
        deadline_polls = 40
        while {u for u, _, _ in callbacks} != cluster.upstreams and deadline_polls:
            page.wait_for_timeout(250)
            deadline_polls -= 1
        assert {u for u, _, _ in callbacks} == cluster.upstreams, Counter(
            u for u, _, _ in callbacks
        )
        assert not app_errors, app_errors
        assert all(status in (200, 204) for _, status, _ in callbacks)

        # The same callback, replayed with the browser's cookie to each instance directly.
        body = next(body for _, status, body in callbacks if status == 200)
        answers = [
            context.request.post(
                f"{instance.url}/_dash-update-component",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            for instance in cluster.instances
        ]
        assert [a.status for a in answers] == [200, 200]
        outputs = [sorted(a.json()["response"]) for a in answers]
        assert outputs[0] == outputs[1] and outputs[0], outputs
    finally:
        context.close()
