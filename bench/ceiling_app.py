"""The ceiling: bare Flask endpoints, a small JSON document and a poll that is never news.

Served by the same gunicorn command and configuration as the dashboard, so the gap between
its throughput and a dashboard callback's is what Dash, the app and its data path cost.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_ceiling_app() -> Flask:
    server = Flask(__name__)

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @server.get("/json")
    def small_json():
        return jsonify(status="ok", value=42)

    @server.post("/poll")
    def unchanged_poll():
        # The same poll body the dashboard's page sends, parsed and answered "nothing new".
        request.get_json(silent=True)
        answer = Response(status=204, headers={"Cache-Control": "no-store"})
        del answer.headers["Content-Type"]
        return answer

    return server
