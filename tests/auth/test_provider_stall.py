"""An identity provider that hangs or drips cannot stall sign-in, or anything else.

``StallingProvider`` is a tiny threaded HTTP server on loopback that serves a discovery
document for itself and, by mode, answers at once, holds each request until the test
releases it, or drips its answer a byte at a time. The app under test is served by the
session's ``LoopbackApp`` (a real threaded server), so concurrent sign-ins are real.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import pytest
import requests
from joserfc.jwk import ECKey

from auth.alb import ALB_DATA_HEADER
from auth.context import auth_state
from auth.oidc import OidcSignIn
from auth.pages import RETRY_AFTER_SECONDS
from auth.provider import DeadlineExceeded, ProviderBusy, ProviderGate, SingleFlightCache
from auth.settings import AuthSettings
from data_access.local import SqliteRecordStore
from devtools.servers import LOOPBACK
from tests.auth.conftest import build_app
from tests.auth.test_alb import alb_settings_with_url, alb_token, claims_for
from tests.plugins.faults import wait_until
from tests.plugins.oidc import LoopbackApp, browser_session, sign_in

DISCOVERY_PATH = "/.well-known/openid-configuration"
HTML = {"Accept": "text/html"}
DRIP_SECONDS = 0.2
# Filler that makes a dripped answer take over a minute: far longer than any deadline here.
PADDING = "x" * 400
# A held request is let go after this long even if the test never releases it.
HOLD_LIMIT_SECONDS = 60.0
DEADLINE_SECONDS = 1
# Room for a loaded machine between the deadline passing and the 503 arriving; still far
# below the time the dripped answer would take.
GRACE_SECONDS = 5.0
Mode = Literal["answer", "hang", "drip"]


class StallingProvider:
    """Discovery and JWKS on loopback; ``mode`` says how each request is answered."""

    def __init__(self) -> None:
        self.mode: Mode = "answer"
        self.drip_part: Literal["headers", "body"] = "headers"
        self.release = threading.Event()
        self.requests: Counter[str] = Counter()
        self.held = 0  # requests held by "hang" right now
        self.bytes_dripped = 0
        self.drips_finished = 0  # dripped answers sent to the end
        self._changed = threading.Condition()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                provider.serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def body_for(self, path: str) -> bytes:
        if path == DISCOVERY_PATH:
            document = {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "padding": PADDING,
            }
        else:
            document = {"keys": [], "padding": PADDING}
        return json.dumps(document).encode()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self._changed:
            self.requests[path] += 1
            self._changed.notify_all()
        body = self.body_for(path)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        if self.mode == "hang":
            with self._changed:
                self.held += 1
                self._changed.notify_all()
            self.release.wait(HOLD_LIMIT_SECONDS)
            with self._changed:
                self.held -= 1
                self._changed.notify_all()
        try:
            if self.mode == "drip":
                self._drip(handler, head, body)
            else:
                handler.wfile.write(head + body)
        except OSError:
            pass  # the client gave up: what the deadline is for
        handler.close_connection = True

    def _drip(self, handler: BaseHTTPRequestHandler, head: bytes, body: bytes) -> None:
        if self.drip_part == "body":
            handler.wfile.write(head)
            handler.wfile.flush()
            dripped = body
        else:
            dripped = head + body
        for index in range(len(dripped)):
            if self.release.is_set():
                return
            handler.wfile.write(dripped[index : index + 1])
            handler.wfile.flush()
            with self._changed:
                self.bytes_dripped += 1
            self.release.wait(DRIP_SECONDS)
        with self._changed:
            self.drips_finished += 1

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def stalling() -> Iterator[StallingProvider]:
    provider = StallingProvider()
    yield provider
    provider.close()


def oidc_settings(provider: StallingProvider, **overrides: str) -> AuthSettings:
    return AuthSettings.from_env(
        {
            "AUTH_MODE": "oidc",
            "SECRET_KEY": "s" * 40,
            "OIDC_ISSUER": provider.url,
            "OIDC_CLIENT_ID": "mission-control",
            "OIDC_CLIENT_SECRET": "secret",
            "ROLE_MAP": "mc-admins=admin",
            "OIDC_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
            **overrides,
        }
    )


@pytest.fixture
def served(loopback_app: LoopbackApp) -> Iterator[LoopbackApp]:
    yield loopback_app
    loopback_app.serve(None)


def sign_in_oidc(app) -> OidcSignIn:
    oidc = auth_state(app).oidc
    assert oidc is not None
    return oidc


def get_login(app: LoopbackApp) -> requests.Response:
    return requests.get(app.url("/login"), headers=HTML, allow_redirects=False, timeout=60)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_dripping_provider_costs_a_sign_in_at_most_the_deadline(
    part, stalling: StallingProvider, served: LoopbackApp, records: SqliteRecordStore
):
    stalling.mode, stalling.drip_part = "drip", part
    served.serve(build_app(oidc_settings(stalling), records))

    started = time.monotonic()
    response = get_login(served)
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text[:300]
    assert "Identity provider unavailable" in response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    # Answered while the provider was mid-answer: it had started and never finished.
    assert stalling.bytes_dripped > 0
    assert stalling.drips_finished == 0
    assert elapsed < DEADLINE_SECONDS + GRACE_SECONDS, elapsed


def test_concurrent_sign_ins_share_one_discovery_fetch(
    stalling: StallingProvider, served: LoopbackApp, records: SqliteRecordStore
):
    logins = 6
    stalling.mode = "hang"
    # Slots for all, and a deadline the hold never reaches: the release decides.
    app = build_app(
        oidc_settings(stalling, OIDC_MAX_CONCURRENT_CALLS="8", OIDC_TIMEOUT_SECONDS="30"),
        records,
    )
    served.serve(app)
    gate = sign_in_oidc(app).gate

    with ThreadPoolExecutor(logins) as pool:
        pending = [pool.submit(get_login, served) for _ in range(logins)]
        # One thread fetching, the others waiting for its answer, each holding a slot.
        assert wait_until(lambda: gate.in_use == logins, 20), gate.in_use
        assert stalling.requests[DISCOVERY_PATH] == 1
        stalling.release.set()
        answers = [future.result(60) for future in pending]

    assert [answer.status_code for answer in answers] == [302] * logins
    assert all(
        answer.headers["Location"].startswith(f"{stalling.url}/authorize") for answer in answers
    )
    later = [get_login(served).status_code for _ in range(4)]
    assert later == [302] * 4
    assert stalling.requests[DISCOVERY_PATH] == 1
    assert sign_in_oidc(app).discovery.fetches == 1


def test_a_sign_in_without_a_free_slot_gets_a_busy_page_at_once(
    stalling: StallingProvider, served: LoopbackApp, records: SqliteRecordStore
):
    stalling.mode = "hang"
    app = build_app(
        oidc_settings(stalling, OIDC_MAX_CONCURRENT_CALLS="1", OIDC_TIMEOUT_SECONDS="30"),
        records,
    )
    served.serve(app)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(get_login, served)
        assert wait_until(lambda: stalling.held == 1, 20)

        second = get_login(served)

        assert not first.done()
        assert stalling.held == 1  # the provider is still hung while the 503 arrives
        stalling.release.set()
        assert first.result(60).status_code == 302
    assert second.status_code == 503
    assert "Identity provider busy" in second.text
    assert second.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_a_dripping_alb_key_endpoint_is_a_503_json_answer_within_the_deadline(
    stalling: StallingProvider, records: SqliteRecordStore
):
    stalling.mode = "drip"
    key = ECKey.generate_key("P-256")
    settings = alb_settings_with_url(f"{stalling.url}/keys/{{kid}}")
    app = build_app(settings.model_copy(update={"oidc_timeout_seconds": DEADLINE_SECONDS}), records)

    started = time.monotonic()
    response = app.test_client().get(
        "/export.csv", headers={ALB_DATA_HEADER: alb_token(key, "kid-1", claims_for("admin"))}
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.is_json, response.text[:200]
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert stalling.bytes_dripped > 0
    assert stalling.drips_finished == 0
    assert elapsed < DEADLINE_SECONDS + GRACE_SECONDS, elapsed


def test_discovery_and_jwks_are_fetched_once_for_several_sign_ins(serve_oidc_app, loopback_app):
    app = serve_oidc_app()

    for login in ("ada", "otto", "vera"):
        with browser_session() as http:
            final = sign_in(http, loopback_app, login)
            assert final.status_code == 200, final.text[:300]

    oidc = sign_in_oidc(app)
    assert (oidc.discovery.fetches, oidc.jwks.fetches) == (1, 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cached_copy_is_served_while_one_thread_refreshes():
    clock = FakeClock()
    refreshing, finish = threading.Event(), threading.Event()
    fetched: list[int] = []

    def fetch() -> dict:
        fetched.append(1)
        if len(fetched) > 1:
            refreshing.set()
            finish.wait(30)
        return {"version": len(fetched)}

    cache = SingleFlightCache(
        fetch, ttl_seconds=10, gate=ProviderGate(4), wait_seconds=5, clock=clock
    )
    assert cache.get() == {"version": 1}
    clock.now = 11  # past the TTL: the next get refreshes
    with ThreadPoolExecutor(1) as pool:
        refresher = pool.submit(cache.get)
        assert refreshing.wait(10)

        during = [cache.get() for _ in range(3)]

        finish.set()
        assert refresher.result(10) == {"version": 2}
    assert during == [{"version": 1}] * 3
    assert cache.get() == {"version": 2}
    assert len(fetched) == 2


def test_a_failed_refresh_reaches_its_waiters_and_drops_the_cached_copy():
    clock = FakeClock()
    fetching, fail = threading.Event(), threading.Event()
    outcomes = iter(["first", "fails", "third"])

    def fetch() -> str:
        outcome = next(outcomes)
        if outcome == "fails":
            fetching.set()
            fail.wait(30)
            raise requests.ConnectionError("provider went away")
        return outcome

    cache = SingleFlightCache(
        fetch, ttl_seconds=10, gate=ProviderGate(4), wait_seconds=5, clock=clock
    )
    assert cache.get() == "first"
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(cache.get, force=True)
        assert fetching.wait(10)
        waiter = pool.submit(cache.get, force=True)  # forced: it may not use the old copy
        assert wait_until(lambda: cache.gate.in_use == 1, 10)  # the waiter holds a slot
        fail.set()
        for future in (leader, waiter):
            with pytest.raises(requests.ConnectionError):
                future.result(10)
    assert cache.get() == "third"  # the failure dropped "first": a new fetch ran


def test_a_waiter_gives_up_at_its_deadline_and_a_full_gate_says_busy():
    release = threading.Event()

    def fetch() -> str:
        release.wait(30)
        return "late"

    cache = SingleFlightCache(fetch, ttl_seconds=10, gate=ProviderGate(1), wait_seconds=0.2)
    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(cache.get)
        assert wait_until(lambda: cache.fetches == 1, 10)
        with pytest.raises(DeadlineExceeded):
            cache.get()
        with cache.gate.slot(), pytest.raises(ProviderBusy):
            cache.get()
        release.set()
        assert leader.result(10) == "late"


@pytest.mark.parametrize("name", ["OIDC_MAX_CONCURRENT_CALLS", "OIDC_TIMEOUT_SECONDS"])
def test_no_slots_or_no_deadline_is_refused_at_start(stalling: StallingProvider, name: str):
    problems = oidc_settings(stalling, **{name: "0"}).problems()

    assert any(name in problem for problem in problems), problems
