"""Pure builders for the system-health view: frames and snapshots in, figure dicts and tiles out.

No I/O here. Figures are plain dicts without theme colours (the browser applies the light or
dark template), in the style of ``dashboard.figures``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard.figures import PALETTE, Figure, no_data_figure
from dashboard.timestamps import utc_text

LATENCY_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
NETWORK_METRICS = ("net_bytes_sent", "net_bytes_recv")

METRIC_LABELS = {
    "cpu_percent": "CPU",
    "memory_percent": "Memory",
    "disk_percent": "Disk",
    "net_bytes_sent": "Sent",
    "net_bytes_recv": "Received",
    "request_rate": "Requests/s",
    "latency_p50_ms": "Latency p50",
    "latency_p95_ms": "Latency p95",
    "latency_p99_ms": "Latency p99",
    "error_rate": "Error rate",
    "active_users": "Active users",
}

# How one fleet value is made from the hosts' values at the same timestamp.
_FLEET_AGGREGATE = {
    "request_rate": "sum",
    "active_users": "sum",
    "net_bytes_sent": "sum",
    "net_bytes_recv": "sum",
    "latency_p50_ms": "mean",
    "latency_p95_ms": "mean",
    "latency_p99_ms": "mean",
    "error_rate": "mean",
}

STATUS_ORDER = {"down": 0, "degraded": 1, "up": 2, "unconfigured": 3}
NOT_AVAILABLE = "n/a"


# ---- metric frames ---------------------------------------------------------------------------


def _timestamps(ts: pd.Series) -> list[str]:
    return pd.to_datetime(ts, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()


def fleet_series(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One value per timestamp across hosts (sum or mean, depending on the metric)."""
    rows = metrics[metrics["metric"] == metric]
    how = _FLEET_AGGREGATE.get(metric, "mean")
    return rows.groupby("ts", sort=True)["value"].agg(how).reset_index()


def latest_values(metrics: pd.DataFrame, metric_names: Sequence[str]) -> dict[str, float]:
    """The fleet value at the newest timestamp of each metric (absent metrics left out)."""
    latest = {}
    for metric in metric_names:
        series = fleet_series(metrics, metric)
        if not series.empty:
            latest[metric] = float(series["value"].iloc[-1])
    return latest


# ---- history figures: a 2 x 2 grid of small charts -------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One small chart of a grid figure: its title, unit and traces (without axis refs)."""

    title: str
    unit: str
    traces: list[dict[str, Any]]


def _host_color(hosts: Sequence[str], host: str) -> str:
    return PALETTE[sorted(hosts).index(host) % len(PALETTE)]


def host_label(host: object, sample_hosts: Collection[str] = ()) -> str:
    """A host's legend name; generated sample hosts say so, apart from real machines."""
    return f"{host} (sample)" if host in sample_hosts else str(host)


def per_host_cell(
    metrics: pd.DataFrame,
    metric: str,
    title: str,
    unit: str,
    sample_hosts: Collection[str] = (),
) -> Cell:
    """One line per host, coloured by host so every cell of a grid agrees."""
    rows = metrics[metrics["metric"] == metric]
    hosts = sorted(metrics["host"].dropna().unique().tolist())
    traces = []
    for host, group in rows.groupby("host", sort=True):
        label = host_label(host, sample_hosts)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label,
                "legendgroup": label,
                "line": {"width": 1.5, "color": _host_color(hosts, host)},
                "x": _timestamps(group["ts"]),
                "y": group["value"].round(3).tolist(),
                "hovertemplate": f"%{{y:.1f}} {unit}<extra>{label}</extra>",
            }
        )
    return Cell(title, unit, traces)


def fleet_cell(
    metrics: pd.DataFrame,
    metric_names: Sequence[str],
    title: str,
    unit: str,
    *,
    scale: float = 1.0,
    colors: Sequence[str] = PALETTE,
) -> Cell:
    """One line per metric with every host combined."""
    traces = []
    for index, metric in enumerate(metric_names):
        series = fleet_series(metrics, metric)
        if series.empty:
            continue
        label = METRIC_LABELS.get(metric, metric)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label,
                "line": {"width": 1.5, "color": colors[index % len(colors)]},
                "x": _timestamps(series["ts"]),
                "y": (series["value"] * scale).round(4).tolist(),
                "hovertemplate": f"%{{y:,.2f}} {unit}<extra>{label}</extra>",
            }
        )
    return Cell(title, unit, traces)


def period_text(hours: int) -> str:
    return "the last hour" if hours == 1 else f"the last {hours} hours"


def grid_figure(cells: Sequence[Cell], *, columns: int = 2, hours: int = 24) -> Figure:
    """Small charts side by side in one figure: one request, one panel, shared time axes."""
    if not any(cell.traces for cell in cells):
        return no_data_figure(f"No metrics in {period_text(hours)}")
    rows = math.ceil(len(cells) / columns)
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "grid": {"rows": rows, "columns": columns, "pattern": "independent"},
        # Room at the bottom for the legend below the last row's date labels.
        "margin": {"l": 56, "r": 16, "t": 28, "b": 64},
        # One legend entry per series name (a host appears in several cells), under the grid.
        "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom"},
        "hovermode": "x unified",
        "uirevision": "keep",
        "annotations": [],
        "meta": {"cells": [cell.title for cell in cells]},
    }
    seen_legend: set[str] = set()
    for index, cell in enumerate(cells, start=1):
        suffix = "" if index == 1 else str(index)
        for trace in cell.traces:
            group = trace.get("legendgroup", trace["name"])
            data.append(
                {
                    **trace,
                    "legendgroup": group,
                    "xaxis": f"x{suffix}",
                    "yaxis": f"y{suffix}",
                    "showlegend": group not in seen_legend,
                }
            )
            seen_legend.add(group)
        layout[f"xaxis{suffix}"] = {"type": "date", "showgrid": False, "automargin": True}
        layout[f"yaxis{suffix}"] = {
            "rangemode": "tozero",
            "automargin": True,
            "title": {"text": cell.unit},
        }
        layout["annotations"].append(
            {
                "text": f"<b>{cell.title}</b>",
                "showarrow": False,
                "xref": f"x{suffix} domain",
                "yref": f"y{suffix} domain",
                "x": 0,
                "y": 1.02,
                "xanchor": "left",
                "yanchor": "bottom",
                "font": {"size": 13},
            }
        )
    return {"data": data, "layout": layout}


def host_history(
    metrics: pd.DataFrame, sample_hosts: Collection[str] = (), *, hours: int = 24
) -> Figure:
    """CPU, memory and disk of each host, and the fleet's network bytes."""
    return grid_figure(
        [
            per_host_cell(metrics, "cpu_percent", "CPU by host", "%", sample_hosts),
            per_host_cell(metrics, "memory_percent", "Memory by host", "%", sample_hosts),
            per_host_cell(metrics, "disk_percent", "Disk by host", "%", sample_hosts),
            fleet_cell(
                metrics, NETWORK_METRICS, "Network, all hosts (per 5 min)", "MB", scale=1e-6
            ),
        ],
        hours=hours,
    )


def app_history(metrics: pd.DataFrame, *, hours: int = 24) -> Figure:
    """Request rate, latency percentiles, error rate and active users of the whole fleet."""
    return grid_figure(
        [
            fleet_cell(metrics, ["request_rate"], "Request rate", "req/s"),
            fleet_cell(metrics, LATENCY_METRICS, "Latency percentiles", "ms"),
            fleet_cell(metrics, ["error_rate"], "Error rate", "%", scale=100, colors=PALETTE[3:]),
            fleet_cell(metrics, ["active_users"], "Active users", "users", colors=PALETTE[2:]),
        ],
        hours=hours,
    )


def cores_figure(per_core: Sequence[float]) -> Figure:
    """Current use of each CPU core of this machine."""
    if not per_core:
        return no_data_figure("No CPU figures")
    return {
        "data": [
            {
                "type": "bar",
                "x": [f"core {n}" for n in range(len(per_core))],
                "y": [round(value, 1) for value in per_core],
                "text": [f"{value:.0f} %" for value in per_core],
                "textposition": "auto",
                "marker": {"color": PALETTE[0]},
                "hovertemplate": "%{x}: %{y:.1f} %<extra></extra>",
            }
        ],
        "layout": {
            "margin": {"l": 48, "r": 16, "t": 12, "b": 32},
            "showlegend": False,
            "yaxis": {"range": [0, 100], "title": {"text": "%"}},
            "bargap": 0.3,
            "uirevision": "keep",
        },
    }


# ---- tiles (the data ``components.panel.render_tiles`` shows) ---------------------------------


def tile(metric: str, label: str, value: str, note: str = "") -> dict[str, Any]:
    return {
        "metric": metric,
        "label": label,
        "value": value,
        "change": "",
        "direction": "none",
        "previous": note,
    }


def app_tiles(metrics: pd.DataFrame) -> list[dict[str, Any]]:
    """The latest application figures, all hosts combined."""
    latest = latest_values(
        metrics, ["request_rate", "latency_p95_ms", "error_rate", "active_users"]
    )

    def shown(name: str, fmt: str) -> str:
        return fmt.format(latest[name]) if name in latest else NOT_AVAILABLE

    return [
        tile("health-rps", "Requests/s", shown("request_rate", "{:,.1f}"), "latest point"),
        tile("health-p95", "Latency p95", shown("latency_p95_ms", "{:,.0f} ms"), "latest point"),
        tile("health-errors", "Error rate", shown("error_rate", "{:.2%}"), "latest point"),
        tile("health-users", "Active users", shown("active_users", "{:,.0f}"), "latest point"),
    ]


@dataclass(frozen=True)
class PipelineNumbers:
    """PipelineStatsQuery's rows as named numbers; None where the lake has nothing to say."""

    uploads_processed: int
    uploads_quarantined: int
    latest_upload_at: float | None
    parquet_bytes: int
    raw_bytes: int

    def lag_seconds(self, now: float) -> float | None:
        if self.latest_upload_at is None:
            return None
        return max(0.0, now - self.latest_upload_at)

    @property
    def compression_ratio(self) -> float | None:
        return self.raw_bytes / self.parquet_bytes if self.parquet_bytes else None


def pipeline_numbers(stats: pd.DataFrame) -> PipelineNumbers:
    values = dict(zip(stats["metric"], stats["value"], strict=True)) if not stats.empty else {}

    def number(name: str) -> float:
        value = values.get(name)
        return 0.0 if value is None or math.isnan(value) else float(value)

    latest = values.get("latest_upload_at")
    return PipelineNumbers(
        uploads_processed=int(number("uploads_processed")),
        uploads_quarantined=int(number("uploads_quarantined")),
        latest_upload_at=None if latest is None or math.isnan(latest) else float(latest),
        parquet_bytes=int(number("parquet_bytes")),
        raw_bytes=int(number("raw_bytes")),
    )


def pipeline_tiles(numbers: PipelineNumbers) -> list[dict[str, Any]]:
    """The figures that change only with the data version (the poll path caches them)."""
    ratio = numbers.compression_ratio
    latest = (
        NOT_AVAILABLE if numbers.latest_upload_at is None else utc_text(numbers.latest_upload_at)
    )
    return [
        tile(
            "health-uploads-processed",
            "Uploads processed",
            f"{numbers.uploads_processed:,}",
            "last 24 h",
        ),
        tile(
            "health-uploads-quarantined",
            "Quarantined",
            f"{numbers.uploads_quarantined:,}",
            "last 24 h, kept with a reason",
        ),
        tile("health-latest-upload", "Latest upload", latest, "processed at"),
        tile(
            "health-parquet-bytes",
            "Parquet written",
            format_bytes(numbers.parquet_bytes),
            NOT_AVAILABLE if ratio is None else f"{ratio:,.0f}x smaller than raw JSON",
        ),
    ]


def pipeline_live_tiles(
    numbers: PipelineNumbers, hit_ratio: float, now: float
) -> list[dict[str, Any]]:
    """The figures that move with the clock: lag and this worker's cache hit ratio."""
    return [
        tile(
            "health-pipeline-lag",
            "Lag since latest upload",
            format_duration(numbers.lag_seconds(now)),
            "time since the newest processed upload",
        ),
        tile(
            "health-cache-hit-ratio",
            "Cache hit ratio",
            f"{hit_ratio:.0%}",
            "memory + cache table, this worker",
        ),
    ]


def host_tiles(snapshot: Any) -> list[dict[str, Any]]:
    """Tiles for a ``probes.HostSnapshot`` (typed loosely: builders stay free of probes)."""
    sent, received = snapshot.net_sent_per_second, snapshot.net_recv_per_second
    return [
        tile(
            "health-live-cpu",
            "CPU",
            f"{snapshot.cpu_percent:.0f} %",
            f"{len(snapshot.cpu_per_core)} cores",
        ),
        tile(
            "health-live-memory",
            "Memory",
            f"{snapshot.memory_percent:.0f} %",
            f"{format_bytes(snapshot.memory_used_bytes)} of "
            f"{format_bytes(snapshot.memory_total_bytes)}",
        ),
        tile(
            "health-live-swap",
            "Swap",
            f"{snapshot.swap_percent:.0f} %",
            f"{format_bytes(snapshot.swap_used_bytes)} of "
            f"{format_bytes(snapshot.swap_total_bytes)}",
        ),
        tile(
            "health-live-disk",
            "Disk",
            f"{snapshot.disk_percent:.0f} %",
            f"{format_bytes(snapshot.disk_used_bytes)} of "
            f"{format_bytes(snapshot.disk_total_bytes)}",
        ),
        tile(
            "health-live-net-sent",
            "Network sent",
            format_bytes(snapshot.net_bytes_sent),
            "since boot" if sent is None else f"{format_bytes(sent)}/s now",
        ),
        tile(
            "health-live-net-recv",
            "Network received",
            format_bytes(snapshot.net_bytes_recv),
            "since boot" if received is None else f"{format_bytes(received)}/s now",
        ),
    ]


def worst_status(statuses: Sequence[str]) -> str:
    """The overall status of a set of probes: the worst of those configured."""
    configured = [s for s in statuses if s != "unconfigured"]
    if not configured:
        return "unconfigured"
    return min(configured, key=lambda status: STATUS_ORDER[status])


# ---- formatting --------------------------------------------------------------------------------


def format_bytes(count: float | None) -> str:
    if count is None:
        return NOT_AVAILABLE
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            # Whole numbers from 10 up: tiles stay one line wide.
            return f"{value:,.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:,.0f} TB" if value >= 10 else f"{value:.1f} TB"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return NOT_AVAILABLE
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def format_latency(milliseconds: float) -> str:
    if milliseconds < 10:
        return f"{milliseconds:.1f} ms"
    return f"{milliseconds:,.0f} ms"
