"""A small app with request metrics, served by gunicorn in the metrics tests."""

from __future__ import annotations

import os

from flask import Flask, abort, g, jsonify

from auth.roles import User
from dashboard.request_hooks import register_hooks
from dashboard.request_metrics import MetricsSettings, register_request_metrics
from data_access.factory import build_stores
from data_access.settings import DataSettings


def create() -> Flask:
    stores = build_stores(DataSettings.from_env())
    server = Flask(__name__)

    @server.before_request
    def _user() -> None:
        g.user = User(subject="operator-1", email="op@example.com", name="Op", role="viewer")

    metrics = register_request_metrics(server, MetricsSettings.from_env(), records=stores.records)
    register_hooks(server, metrics.hooks())

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @server.get("/ok")
    def ok():
        return jsonify(pid=os.getpid())

    @server.get("/fail")
    def fail():
        abort(500)

    return server
