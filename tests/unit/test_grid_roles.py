"""Every grid the app serves either shows aggregates only or needs the operator role.

The README's role table: viewers see aggregates; per-customer drill-down and a week's order
rows (user ids) need operator. A new grid carrying per-person rows that no
``protect_dash_outputs`` rule covers fails here.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from auth.context import auth_state
from auth.guard import dash_output_ids
from auth.roles import rank
from dashboard import create_app
from dashboard.pages import revenue

GRID_PROPERTY = ".rowData"
# Grids a viewer may see, with their columns: none of them names a person.
AGGREGATE_GRIDS = {"revenue-products": revenue.PRODUCT_COLUMNS}
PER_PERSON_FIELDS = {"user_id", "customer_id", "order_id", "session_id", "email", "customer"}


def _grid_panels(server: Flask) -> set[str]:
    """The panel of every callback output that fills a grid's rows."""
    dependencies = server.test_client().get("/_dash-dependencies").get_json()
    panels = set()
    for dependency in dependencies:
        output = dependency["output"]
        if GRID_PROPERTY not in output:
            continue
        # The panel id is the first string of the grid's pattern id ({"panel": ..., "type": ...}).
        panels.update(
            part
            for part in dash_output_ids({"output": output})
            if not part.startswith("mc-") and part != "grid"
        )
    return panels


def test_every_grid_is_aggregate_only_or_needs_the_operator_role(tmp_path: Path) -> None:
    server = create_app(
        {
            "LAKE_ROOT": str(tmp_path / "lake"),
            "STATE_DB": str(tmp_path / "state.sqlite"),
            "SECRET_KEY": "test",
            "LOG_LEVEL": "WARNING",
        }
    )
    rules = auth_state(server).dash_rules
    panels = _grid_panels(server)

    assert {"customer-sessions", "revenue-orders", "revenue-products"} <= panels
    for panel in sorted(panels):
        needed = [role for prefix, role in rules.items() if panel.startswith(prefix)]
        protected = any(rank(role) >= rank("operator") for role in needed)
        if panel in AGGREGATE_GRIDS:
            fields = {column["field"] for column in AGGREGATE_GRIDS[panel]}
            assert not fields & PER_PERSON_FIELDS, (panel, fields & PER_PERSON_FIELDS)
        else:
            assert protected, f"grid {panel!r} is neither aggregate-only nor protected: {rules}"


def test_the_aggregate_grids_name_no_person() -> None:
    for panel, columns in AGGREGATE_GRIDS.items():
        assert columns, panel
        assert not {column["field"] for column in columns} & PER_PERSON_FIELDS, panel
