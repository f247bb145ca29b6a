"""The integrity check every fault and load test ends with."""

from __future__ import annotations

from data_access.stores import Stores
from pipeline.reconcile import ReconcileReport, reconcile


def assert_reconciled(stores: Stores) -> ReconcileReport:
    """Every upload processed or quarantined once, every accepted event present once."""
    report = reconcile(stores)
    assert report.ok, "reconcile found problems:\n" + "\n".join(report.problems())
    assert report.raw_uploads == report.processed + report.quarantined, report
    return report
