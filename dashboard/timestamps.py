"""The one way the pages show a moment in time: ``YYYY-MM-DD HH:MM:SS UTC``.

Grids format in the browser (``assets/mc-grid-formatters.js``, same format) so their row data,
filters and CSV exports keep the machine-readable values.
"""

from __future__ import annotations

import datetime as dt

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def utc_text(epoch: float) -> str:
    """``epoch`` seconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime(UTC_FORMAT)
