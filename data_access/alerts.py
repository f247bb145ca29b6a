"""Alert documents, as the evaluator writes them and the dashboard reads and acts on them.

Records store layout:
- kind ``alert``, key ``{opened_at:017.6f}-{id}`` (lists in time order): one document per
  alert, open or resolved.
- kind ``alert_open``, key ``{rule}|{subject}``: points at the open alert of that rule and
  subject. Created with ``put_new``, so however many evaluators run, a (rule, subject) has at
  most one open alert.

Every change bumps the state value ``version:alerts`` so pages polling alerts see it at once.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import pandas as pd

from data_access.queries import Query
from data_access.stores import RecordStore, StateStore, Stores

KIND = "alert"
OPEN_KIND = "alert_open"
VERSION_ALERTS = "version:alerts"
SEVERITIES = ("error", "warning", "info")

Severity = Literal["error", "warning", "info"]
Status = Literal["open", "resolved"]


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule: str
    subject: str
    severity: str
    status: str
    message: str
    value: float | None
    threshold: float | None
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    resolved_by: str | None = None  # "auto" when the condition cleared, else who resolved it
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def as_doc(self) -> dict:
        return asdict(self)


def _alert(doc: dict) -> Alert:
    return Alert(**{name: doc.get(name) for name in Alert.__dataclass_fields__})


def open_key(rule: str, subject: str) -> str:
    return f"{rule}|{subject}"


def bump_version(state: StateStore, now: float) -> None:
    state.put(VERSION_ALERTS, f"{now:.6f}")


def get_alert(records: RecordStore, alert_id: str) -> Alert | None:
    doc = records.get(KIND, alert_id)
    return _alert(doc) if doc else None


def list_alerts(records: RecordStore, *, limit: int = 200) -> list[Alert]:
    """Newest first."""
    return [_alert(doc) for _, doc in records.scan(KIND, limit=limit, newest_first=True)]


def open_alerts(records: RecordStore) -> dict[tuple[str, str], Alert]:
    """The open alert of each (rule, subject); an index entry whose document is missing is
    reported with a placeholder so the evaluator can repair it."""
    found = {}
    for key, pointer in records.scan(OPEN_KIND, limit=10_000):
        rule, _, subject = key.partition("|")
        alert = get_alert(records, pointer["alert_id"])
        if alert is None or not alert.is_open:
            alert = Alert(pointer["alert_id"], rule, subject, "info", "open", "", None, None, 0, 0)
        found[(rule, subject)] = alert
    return found


def open_alert(
    records: RecordStore,
    *,
    rule: str,
    subject: str,
    severity: str,
    message: str,
    value: float | None,
    threshold: float | None,
    now: float,
) -> Alert | None:
    """Open an alert; None when (rule, subject) already has one open."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    alert_id = f"{now:017.6f}-{secrets.token_hex(4)}"
    if not records.put_new(OPEN_KIND, open_key(rule, subject), {"alert_id": alert_id}):
        return None
    alert = Alert(alert_id, rule, subject, severity, "open", message, value, threshold, now, now)
    records.put(KIND, alert_id, alert.as_doc())
    return alert


def save_open_alert(records: RecordStore, alert: Alert) -> bool:
    """Write an updated open alert unless someone resolved it meanwhile."""
    current = records.get(KIND, alert.alert_id)
    if current is not None and current.get("status") != "open":
        return False
    if current is not None:  # keep an acknowledgement made since the evaluator read it
        alert = _alert(
            {
                **alert.as_doc(),
                "acknowledged_at": current.get("acknowledged_at"),
                "acknowledged_by": current.get("acknowledged_by"),
            }
        )
    records.put(KIND, alert.alert_id, alert.as_doc())
    return True


def resolve_alert(
    records: RecordStore,
    state: StateStore,
    alert_id: str,
    *,
    by: str,
    now: float,
) -> Alert:
    doc = records.get(KIND, alert_id)
    if doc is None:
        raise KeyError(f"no alert {alert_id!r}")
    alert = _alert(doc)
    if alert.is_open:
        doc = {
            **doc,
            "status": "resolved",
            "resolved_at": now,
            "resolved_by": by,
            "updated_at": now,
        }
        records.put(KIND, alert_id, doc)
        key = open_key(alert.rule, alert.subject)
        pointer = records.get(OPEN_KIND, key)
        if pointer is not None and pointer.get("alert_id") == alert_id:
            records.delete(OPEN_KIND, key)
        bump_version(state, now)
    return _alert(doc)


def acknowledge_alert(
    records: RecordStore,
    state: StateStore,
    alert_id: str,
    *,
    by: str,
    now: float,
) -> Alert:
    """Mark an open alert as seen by ``by``; it stays open until its condition clears."""
    doc = records.get(KIND, alert_id)
    if doc is None:
        raise KeyError(f"no alert {alert_id!r}")
    if doc.get("status") == "open" and not doc.get("acknowledged_at"):
        doc = {**doc, "acknowledged_at": now, "acknowledged_by": by, "updated_at": now}
        records.put(KIND, alert_id, doc)
        bump_version(state, now)
    return _alert(doc)


ALERT_COLUMNS = list(Alert.__dataclass_fields__)


@dataclass(frozen=True)
class AlertsQuery(Query):
    """Recent alerts, open ones first, newest first within each group.

    ``since`` (epoch seconds) keeps the alerts opened from then on, and every open alert:
    a short window must not hide something still firing.
    """

    kind: ClassVar[str] = "alerts"
    limit: int = 200
    since: float | None = None

    def versions(self) -> list[str]:
        return [VERSION_ALERTS]

    def load(self, stores: Stores) -> pd.DataFrame:
        alerts = list_alerts(stores.records, limit=self.limit)
        if not alerts:
            return pd.DataFrame({name: pd.Series(dtype="object") for name in ALERT_COLUMNS})
        frame = pd.DataFrame([alert.as_doc() for alert in alerts], columns=ALERT_COLUMNS)
        if self.since is not None:
            recent = (frame["status"] == "open") | (frame["opened_at"] >= self.since)
            frame = frame[recent]
        frame["_closed"] = frame["status"] != "open"
        frame = frame.sort_values(["_closed", "opened_at"], ascending=[True, False], kind="stable")
        return frame.drop(columns="_closed").reset_index(drop=True)
