"""A minimal Flask app guarded by ``init_auth``, with Dash-like routes, for the auth tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, Response, jsonify, request

from auth import audit, current_user, init_auth, protect_dash_outputs, require_role
from auth.settings import AuthSettings
from data_access.local import SqliteRecordStore
from tests.plugins.oidc import LoopbackApp, OidcProvider, browser_session

# Component-id prefixes and the role their callbacks need, as the dashboard will use them.
DASH_RULES = {"customer-": "operator", "alert-ack": "admin"}
EXPORT_ROWS = [("2024-01-01", "12"), ("2024-01-02", "15")]


def build_app(settings: AuthSettings, records: SqliteRecordStore | None) -> Flask:
    server = Flask("auth-under-test")
    init_auth(server, settings, records)

    @server.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @server.get("/readyz")
    def readyz() -> Response:
        return jsonify(status="ready")

    @server.get("/")
    @server.get("/<path:page>")
    def page(page: str = "") -> Response:
        user = current_user()
        assert user is not None  # the guard let us in
        return jsonify(page=page, email=user.email, role=user.role, query=request.args)

    @server.get("/assets/<path:filename>")
    def asset(filename: str) -> Response:
        return Response("body{}", mimetype="text/css")

    @server.get("/_dash-layout")
    def dash_layout() -> Response:
        return jsonify(props={"children": "layout"})

    @server.post("/_dash-update-component")
    def dash_update() -> Response:
        return jsonify(response={"ok": True})

    @server.get("/export.csv")
    @require_role("operator")
    def export_csv() -> Response:
        view = request.args.get("view", "revenue")
        audit("export", view=view, filters=dict(request.args), rows=len(EXPORT_ROWS))
        body = "date,orders\n" + "".join(f"{day},{orders}\n" for day, orders in EXPORT_ROWS)
        return Response(body, mimetype="text/csv")

    protect_dash_outputs(server, DASH_RULES)
    return server


@pytest.fixture
def records(tmp_path: Path) -> SqliteRecordStore:
    return SqliteRecordStore(tmp_path / "records.sqlite")


@pytest.fixture
def serve_oidc_app(
    oidc_provider: OidcProvider, loopback_app: LoopbackApp, records: SqliteRecordStore
) -> Iterator[Callable[..., Flask]]:
    """Builds the app for the shared provider (env overrides as keywords) and serves it."""

    def serve(provider: OidcProvider | None = None, **overrides: str) -> Flask:
        env = (provider or oidc_provider).env(**overrides)
        app = build_app(AuthSettings.from_env(env), records)
        loopback_app.serve(app)
        return app

    yield serve
    loopback_app.serve(None)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with browser_session() as session:
        yield session


def audit_events(records: SqliteRecordStore) -> list[dict]:
    """Audit entries, oldest first."""
    return [entry for _, entry in records.scan("audit")]
