"""The ceiling: a bare Flask endpoint answering a small JSON document.

Served by the same gunicorn command and configuration as the dashboard, so the gap between
its throughput and a dashboard callback's is what Dash, the app and its data path cost.
"""

from __future__ import annotations

from flask import Flask, jsonify


def create_ceiling_app() -> Flask:
    server = Flask(__name__)

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @server.get("/json")
    def small_json():
        return jsonify(status="ok", value=42)

    return server
