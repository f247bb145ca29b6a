"""The audit log: append-only, time-ordered, never failing the request it records."""

from __future__ import annotations

import datetime
import logging

from auth.audit import AUDIT_KIND, AuditLog
from auth.roles import User

ALICE = User(subject="sub-a", email="alice@example.test", name="Alice", role="operator")


class Ticking:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_entries_list_in_time_order_with_who_what_and_details(records):
    log = AuditLog(records, clock=Ticking())

    log.record("sign-in", ALICE, {"method": "oidc"}, client_ip="10.0.0.7")
    log.record("export", ALICE, {"view": "revenue", "day": datetime.date(2024, 1, 2), "rows": 3})

    entries = records.scan(AUDIT_KIND)
    assert [entry["event"] for _, entry in entries] == ["sign-in", "export"]
    assert [key for key, _ in entries] == sorted(key for key, _ in entries)
    first, second = entries[0][1], entries[1][1]
    assert (first["who"], first["role"], first["ip"]) == (ALICE.email, ALICE.role, "10.0.0.7")
    assert second["details"] == {"view": "revenue", "day": "2024-01-02", "rows": 3}
    assert [entry["event"] for _, entry in log.recent()] == ["export", "sign-in"]


def test_entries_in_the_same_instant_never_overwrite_each_other(records):
    log = AuditLog(records, clock=lambda: 1_700_000_000.0)

    for number in range(20):
        log.record("alert-ack", ALICE, {"alert": number})

    stored = [entry["details"]["alert"] for _, entry in records.scan(AUDIT_KIND)]
    assert sorted(stored) == list(range(20))


class BrokenStore:
    def put_new(self, kind: str, key: str, doc: dict) -> bool:
        raise RuntimeError("store down")

    def scan(self, kind: str, **options: object) -> list:
        raise RuntimeError("store down")


def test_a_store_failure_is_logged_not_raised(caplog):
    caplog.set_level(logging.INFO, logger="auth.audit")

    entry = AuditLog(BrokenStore()).record("sign-out", ALICE, {})

    assert entry["event"] == "sign-out"
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("audit {") and "sign-out" in message for message in messages)
    assert any("audit store write failed" in message for message in messages)


def test_without_a_store_entries_still_reach_the_log(caplog):
    caplog.set_level(logging.INFO, logger="auth.audit")

    AuditLog(None).record("refused", None, {"reason": "no mapped role"})

    assert any("no mapped role" in record.getMessage() for record in caplog.records)
