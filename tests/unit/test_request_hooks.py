"""The request hooks ``create_app`` registers: in the one order it declares, and that order's
consequences (refused requests still carry an id, are measured and get the headers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from dashboard import create_app
from dashboard.app import REQUEST_HOOKS_KEY
from dashboard.observability import REQUEST_ID_HEADER
from dashboard.request_hooks import RequestHooks, registered_hooks

BEFORE = (
    "bind_request_id",
    "start_timer",
    "guard_request",
    "refuse_cross_site_writes",
    "refuse_malformed_callbacks",
)
AFTER = ("add_headers", "not_found_status", "record", "echo_request_id")
TEARDOWN = ("count_unanswered", "unbind_request_id")
CALLBACK = "/_dash-update-component"
OFF_SITE = {"Origin": "https://evil.example"}


@pytest.fixture
def server(tmp_path: Path) -> Flask:
    # AUTH_MODE=dev: the test client (127.0.0.1) is the local user, any other address is refused.
    return create_app(
        {
            "LAKE_ROOT": str(tmp_path / "lake"),
            "STATE_DB": str(tmp_path / "state.sqlite"),
            "SECRET_KEY": "test",
            "LOG_LEVEL": "WARNING",
        }
    )


def _names(hooks: tuple[Callable, ...]) -> tuple[str, ...]:
    return tuple(hook.__name__ for hook in hooks)


def test_flask_holds_exactly_the_declared_hooks_in_the_declared_order(server: Flask) -> None:
    declared: RequestHooks = server.extensions[REQUEST_HOOKS_KEY]
    registered = registered_hooks(server)

    assert _names(declared.before) == BEFORE
    assert _names(declared.after) == AFTER
    assert _names(declared.teardown) == TEARDOWN
    # Ahead of ours only Dash's own first-request setup, which create_app has already run.
    dash_setup = registered.before[: -len(declared.before)]
    assert {hook.__module__ for hook in dash_setup} == {"dash.dash"}
    assert registered.before[len(dash_setup) :] == declared.before
    assert registered.after == declared.after
    assert registered.teardown == declared.teardown


def test_a_request_goes_through_the_hooks_in_that_order(server: Flask) -> None:
    ran: list[str] = []

    def recording(hook: Callable) -> Callable:
        def run(*args: object) -> object:
            ran.append(hook.__name__)
            return hook(*args)

        return run

    for hooks in (server.before_request_funcs, server.after_request_funcs):
        hooks[None] = [recording(hook) for hook in hooks[None]]

    assert server.test_client().get("/").status_code == 200
    ours = [name for name in ran if name in BEFORE + AFTER]
    assert ours == [*BEFORE, *AFTER]


def test_a_request_the_guard_refuses_still_has_an_id_headers_and_a_count(server: Flask) -> None:
    client = server.test_client()

    refused = client.post(
        CALLBACK,
        data="not json",
        headers={**OFF_SITE, REQUEST_ID_HEADER: "refused-1"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )

    # The guard answered (dev mode is loopback only), ahead of the cross-site and body checks.
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "AUTH_MODE=dev answers only on loopback"
    assert refused.headers[REQUEST_ID_HEADER] == "refused-1"
    assert refused.headers["X-Content-Type-Options"] == "nosniff"  # the after hooks ran
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'route="/_dash-update-component",status="403"} 1.0' in exposition


def test_the_cross_site_check_comes_before_the_body_check(server: Flask) -> None:
    client = server.test_client()

    off_site = client.post(CALLBACK, data="not json", headers=OFF_SITE)
    same_site = client.post(CALLBACK, data="not json", content_type="application/json")

    assert off_site.status_code == 403
    assert off_site.get_json()["error"] == "Cross-site request refused."
    assert same_site.status_code == 400


def test_an_unknown_page_is_counted_with_its_final_status(server: Flask) -> None:
    client = server.test_client()

    assert client.get("/no-such-page").status_code == 404

    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'route="/<path:path>",status="404"} 1.0' in exposition
