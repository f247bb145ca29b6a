"""The Dash app. ``create_app()`` is the only place that wires the parts together."""

from dashboard.app import create_app

__all__ = ["create_app"]
