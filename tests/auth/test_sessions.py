"""Server-side sessions: what the cookie holds, sign-out that signs out, idle expiry that
background polls do not extend, sign out everywhere and the admin sessions page.

The sign-in tests run the real code flow against the OpenID Provider; the lifetime tests
drive the guard with Flask's test client and a clock the test moves.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import requests
from flask import Flask

from auth.context import auth_state
from auth.guard import PANEL_POLL_PATH
from auth.session import SESSION_COOKIE_NAME, SESSION_KIND, SID_KEY
from data_access.local import SqliteRecordStore
from tests.auth.conftest import audit_events, build_app
from tests.auth.test_guard import HTML, Clock, oidc_settings, sign_in_as
from tests.auth.test_oidc_flow import ADMIN, VIEWER, is_signed_in
from tests.plugins.oidc import browser_session, sign_in

POLL = "mc-poll.n_intervals"  # what the dashboard's interval changes on every tick
MINUTE = 60.0


def signed_in_copy(http: requests.Session) -> requests.Session:
    """Another client holding a copy of ``http``'s session cookie, as a thief would."""
    thief = requests.Session()
    thief.cookies.set(SESSION_COOKIE_NAME, http.cookies.get(SESSION_COOKIE_NAME))
    return thief


def test_cookie_holds_only_the_session_id(serve_oidc_app, loopback_app, http, records):
    app = serve_oidc_app()
    assert sign_in(http, loopback_app, VIEWER.login).status_code == 200
    raw = http.cookies.get(SESSION_COOKIE_NAME)

    contents = app.session_interface.get_signing_serializer(app).loads(raw)
    session_id = contents[SID_KEY]
    stored = records.scan(SESSION_KIND)

    assert set(contents) - {"_permanent"} == {SID_KEY}
    assert len(raw) < 300  # was ~1.2 KB with the ID token and claims in it
    # The store holds the session under the id's hash, never the id itself.
    assert [key for key, _ in stored] == [hashlib.sha256(session_id.encode()).hexdigest()]
    doc = stored[0][1]
    assert session_id not in str(doc)
    assert doc["email"] == VIEWER.email and doc["id_token"] and doc["claims"]


def test_cookie_copied_before_sign_out_is_refused_after_it(
    serve_oidc_app, loopback_app, http, records
):
    serve_oidc_app()
    sign_in(http, loopback_app, VIEWER.login)
    with signed_in_copy(http) as thief:
        assert is_signed_in(thief, loopback_app)

        http.post(loopback_app.url("/logout"), timeout=10)

        assert not is_signed_in(http, loopback_app)
        assert not is_signed_in(thief, loopback_app)
    assert records.scan(SESSION_KIND) == []


def test_sign_out_everywhere_ends_the_users_other_sessions(
    serve_oidc_app, loopback_app, http, records
):
    serve_oidc_app()
    sign_in(http, loopback_app, VIEWER.login)
    with browser_session() as laptop, browser_session() as other_user:
        sign_in(laptop, loopback_app, VIEWER.login)
        sign_in(other_user, loopback_app, ADMIN.login)
        asked = http.get(loopback_app.url("/logout"), timeout=10)

        http.post(loopback_app.url("/logout/everywhere"), timeout=10)

        assert "Sign out everywhere" in asked.text
        assert not is_signed_in(http, loopback_app)
        assert not is_signed_in(laptop, loopback_app)
        assert is_signed_in(other_user, loopback_app)
    everywhere = [e for e in audit_events(records) if e["event"] == "sign-out-everywhere"]
    assert [(e["who"], e["details"]["sessions"]) for e in everywhere] == [(VIEWER.email, 2)]


def _end_buttons(page: str) -> list[str]:
    return re.findall(r"name='key' value='([0-9a-f]{64})'", page)


def test_admin_lists_and_ends_a_users_session(serve_oidc_app, loopback_app, records):
    serve_oidc_app()
    with browser_session() as admin, browser_session() as viewer:
        sign_in(admin, loopback_app, ADMIN.login)
        sign_in(viewer, loopback_app, VIEWER.login)
        everyone = admin.get(loopback_app.url("/admin/sessions"), timeout=10)
        listed = admin.get(
            loopback_app.url("/admin/sessions"), params={"user": VIEWER.email}, timeout=10
        )
        refused = viewer.get(loopback_app.url("/admin/sessions"), headers=HTML, timeout=10)
        [viewer_key] = _end_buttons(listed.text)

        admin.post(loopback_app.url("/admin/sessions/end"), data={"key": viewer_key}, timeout=10)

        assert len(_end_buttons(everyone.text)) == 2
        assert refused.status_code == 403
        assert not is_signed_in(viewer, loopback_app)
        assert is_signed_in(admin, loopback_app)
    ended = [e for e in audit_events(records) if e["event"] == "session-ended"]
    assert [(e["who"], e["details"]["target"]) for e in ended] == [(ADMIN.email, VIEWER.email)]


# ---- lifetime, with a clock the test moves ---------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


def clocked_app(tmp_path: Path, clock: Clock, **env: str) -> tuple[Flask, SqliteRecordStore]:
    records = SqliteRecordStore(tmp_path / "records.sqlite", clock=clock)
    server = build_app(oidc_settings(**env), records)
    auth_state(server).clock = clock
    return server, records


def dash_request(client, changed: list[str]) -> int:
    body = {
        "output": "kpi-revenue.figure",
        "outputs": {"id": "kpi-revenue", "property": "figure"},
        "inputs": [],
        "changedPropIds": changed,
    }
    return client.post("/_dash-update-component", json=body).status_code


def test_idle_expiry_is_kept_by_the_server_and_polls_do_not_extend_it(tmp_path, clock):
    app, records = clocked_app(tmp_path, clock)  # SESSION_IDLE_MINUTES=30
    polling, clicking = app.test_client(), app.test_client()
    sign_in_as(polling, "viewer")
    sign_in_as(clicking, "operator")
    idle = auth_state(app).idle_seconds

    answers = []
    for _ in range(int(idle / (10 * MINUTE)) + 1):  # a tick and a click every 10 minutes
        clock.now += 10 * MINUTE
        answers.append((dash_request(polling, [POLL]), dash_request(clicking, ["date.value"])))

    assert answers[0] == (200, 200)
    assert answers[-1] == (401, 200)
    assert [who for who in (doc["email"] for _, doc in records.scan(SESSION_KIND))] == [
        "operator@example.test"
    ]  # the idle session's record is gone, not just refused


@pytest.mark.parametrize("request_kind", ["panel poll", "panel refresh"])
def test_the_panel_poll_and_the_refreshes_it_fires_are_not_activity(
    tmp_path, clock, request_kind: str
):
    app, _ = clocked_app(tmp_path, clock)
    client = app.test_client()
    sign_in_as(client, "viewer")
    idle = auth_state(app).idle_seconds

    def background_request() -> int:
        if request_kind == "panel poll":
            return client.post(PANEL_POLL_PATH, json={}).status_code
        return dash_request(client, ['{"panel":"overview-kpis","type":"mc-tick"}.data'])

    statuses = []
    for _ in range(int(idle / (10 * MINUTE)) + 1):
        clock.now += 10 * MINUTE
        statuses.append(background_request())

    assert statuses[0] != 401 and statuses[-1] == 401


def test_a_navigation_counts_as_activity(tmp_path, clock):
    app, _ = clocked_app(tmp_path, clock)
    client = app.test_client()
    sign_in_as(client, "viewer")
    idle = auth_state(app).idle_seconds

    clock.now += idle - MINUTE
    client.get("/revenue", headers=HTML)
    clock.now += idle - MINUTE
    navigating = dash_request(client, [POLL])

    assert navigating == 200


def test_kiosk_users_polls_count_as_activity(tmp_path, clock):
    app, _ = clocked_app(tmp_path, clock, SESSION_KIOSK_USERS="Viewer@example.test")
    wall, desk = app.test_client(), app.test_client()
    sign_in_as(wall, "viewer")
    sign_in_as(desk, "operator")
    state = auth_state(app)

    answers = []
    while clock.now - 1_700_000_000.0 < 2 * state.idle_seconds:
        clock.now += 10 * MINUTE
        answers.append((dash_request(wall, [POLL]), dash_request(desk, [POLL])))
    clock.now += state.max_seconds  # the absolute limit still holds for a kiosk

    assert answers[-1] == (200, 401)
    assert dash_request(wall, [POLL]) == 401


def test_seen_at_is_rewritten_at_most_once_a_minute(tmp_path, clock):
    app, records = clocked_app(tmp_path, clock)
    client = app.test_client()
    sign_in_as(client, "viewer")
    signed_in_at = clock.now

    clock.now += 30
    client.get("/", headers=HTML)
    [(_, after_30s)] = records.scan(SESSION_KIND)
    clock.now += 31
    client.get("/", headers=HTML)
    [(_, after_61s)] = records.scan(SESSION_KIND)

    assert after_30s["seen_at"] == signed_in_at
    assert after_61s["seen_at"] == signed_in_at + 61


def test_other_workers_honour_an_ended_session_within_the_recheck_window(tmp_path, clock):
    # Two apps on one store are two workers; each keeps lookups for SESSION_RECHECK_SECONDS.
    records = SqliteRecordStore(tmp_path / "records.sqlite", clock=clock)
    workers = [build_app(oidc_settings(SESSION_RECHECK_SECONDS="5"), records) for _ in "ab"]
    for worker in workers:
        auth_state(worker).clock = clock
    ending, other = (worker.test_client() for worker in workers)
    sign_in_as(ending, "viewer")
    with ending.session_transaction() as cookie:
        session_id = cookie[SID_KEY]
    with other.session_transaction() as cookie:
        cookie[SID_KEY] = session_id  # the same browser, its next request on the other worker
    assert other.get("/", headers=HTML).status_code == 200

    ending.post("/logout")
    on_the_ending_worker = ending.get("/", headers=HTML).status_code
    within_the_window = other.get("/", headers=HTML).status_code
    clock.now += 5
    after_the_window = other.get("/", headers=HTML).status_code

    assert on_the_ending_worker == 302
    assert within_the_window == 200  # the documented window
    assert after_the_window == 302


def test_recheck_zero_asks_the_store_on_every_request(tmp_path, clock):
    records = SqliteRecordStore(tmp_path / "records.sqlite", clock=clock)
    app = build_app(oidc_settings(SESSION_RECHECK_SECONDS="0"), records)
    auth_state(app).clock = clock
    client = app.test_client()
    session_id = sign_in_as(client, "viewer")

    records.delete(SESSION_KIND, hashlib.sha256(session_id.encode()).hexdigest())

    assert client.get("/", headers=HTML).status_code == 302
