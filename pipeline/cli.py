"""The ``mission-control`` command."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass

from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores


def _stores() -> Stores:
    return build_stores(DataSettings.from_env())


def _print(value: object) -> None:
    print(json.dumps(asdict(value) if is_dataclass(value) else value, indent=2, default=str))


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.generate import generate

    end = dt.date.fromisoformat(args.end) if args.end else dt.datetime.now(dt.UTC).date()
    stores = _stores()
    summary = generate(
        stores.lake,
        queue=stores.queue,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        end_date=end,
        bad_uploads=args.bad,
        progress=lambda line: print(line, file=sys.stderr),
    )
    _print(summary)
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from pipeline.events import compact_events, compact_metrics
    from pipeline.process import drain, drain_parallel

    settings = DataSettings.from_env()
    stores = build_stores(settings)
    if args.workers > 1:
        summary = drain_parallel(settings, workers=args.workers, batch=args.batch)
    else:
        summary = drain(stores, batch=args.batch)
    _print({**asdict(summary), "uploads_per_second": round(summary.uploads_per_second, 1)})
    _print(compact_events(stores))
    _print(compact_metrics(stores))
    return 0


def cmd_rollup(args: argparse.Namespace) -> int:
    from pipeline.rollup import rollup_all
    from pipeline.sql import export_app_dimension

    stores = _stores()
    _print(rollup_all(stores))
    # SQL joins the app dimension from the lake; the dashboard reads it from the records.
    export_app_dimension(stores)
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from pipeline.reconcile import reconcile, requeue_missed

    stores = _stores()
    if args.requeue:
        print(f"re-queued {requeue_missed(stores)} uploads", file=sys.stderr)
    report = reconcile(stores)
    _print(report)
    return 0 if report.ok else 1


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from pipeline.bootstrap import bootstrap

    changes = bootstrap(DataSettings.from_env())
    for line in changes:
        print(line)
    if not changes:
        print("nothing to change")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from pipeline.sql import SqlError, athena_view_ddl, connect, format_result, run_query

    if args.athena_ddl:
        print(athena_view_ddl(args.database))
        return 0
    if not args.query:
        print("a query is needed (or --athena-ddl)", file=sys.stderr)
        return 2
    try:
        result = run_query(connect(DataSettings.from_env()), args.query)
    except SqlError as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 1
    print(format_result(result, args.format))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # gunicorn runs the dashboard in its own process; the pipeline never imports the dashboard.
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"{args.host}:{args.port}",
        "wsgi:server",
    ]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover - execv does not return


# ---- live data: API keys, simulator, scheduler, alerts --------------------------------------


def _operator(args: argparse.Namespace) -> str:
    import getpass

    return args.by or f"cli:{getpass.getuser()}"


def cmd_api_key(args: argparse.Namespace) -> int:
    from data_access.apikeys import create_key, list_keys, revoke_key

    stores = _stores()
    if args.action == "create":
        created = create_key(
            stores.records,
            args.name,
            args.scope or ["ingest"],
            created_by=_operator(args),
            rate_per_second=args.rate,
            rate_burst=args.burst,
        )
        _print(created.key.public())
        # The token exists only here: it is stored hashed and cannot be shown again.
        print(f"\nAPI key (shown once, store it now):\n{created.token}", file=sys.stderr)
        if args.token_file:
            with open(args.token_file, "x", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(created.token + "\n")
        return 0
    if args.action == "list":
        _print([key.public() for key in list_keys(stores.records, stores.state)])
        return 0
    try:
        _print(revoke_key(stores.records, args.key_id, revoked_by=_operator(args)).public())
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pipeline.simulate import SimulateOptions, SimulatorSettings, simulate

    api_key = args.api_key or SimulatorSettings.from_env().api_key
    if not api_key:
        print("an API key is needed: --api-key or MC_API_KEY", file=sys.stderr)
        return 2
    try:
        options = SimulateOptions(
            base_url=args.url,
            api_key=api_key,
            rate=args.rate,
            count=args.count,
            duration_seconds=args.duration,
            batch_size=args.batch_size,
            purchase_share=args.purchase_share,
            seed=args.seed,
            allow_remote=args.allow_remote,
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def report(summary) -> None:
        print(f"sent {summary.sent} accepted {summary.accepted}", file=sys.stderr)

    summary = simulate(options, stop=stop, progress=report)
    result = {
        "sent": summary.sent,
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
        "failed": summary.failed,
        "retries": summary.retries,
        "by_type": dict(summary.by_type),
        "statuses": {str(k): v for k, v in summary.statuses.items()},
        "seconds": round(summary.elapsed_seconds, 2),
        "accepted_per_second": round(summary.events_per_second, 1),
    }
    _print(result)
    return 0 if summary.failed == 0 and summary.rejected == 0 else 1


def cmd_scheduler(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pipeline.scheduler import SchedulerSettings, run_scheduler

    env = dict(os.environ)
    if args.jobs:
        env["SCHEDULER_JOBS"] = args.jobs
    settings = SchedulerSettings.from_env(env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_scheduler(_stores(), settings, stop)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    import time

    from data_access.alerts import acknowledge_alert, list_alerts, resolve_alert
    from pipeline.alerts import AlertSettings
    from pipeline.scheduler import run_alerts

    stores = _stores()
    if args.action == "list":
        alerts = list_alerts(stores.records, limit=args.limit)
        _print([a.as_doc() for a in alerts if a.is_open or not args.open])
        return 0
    if args.action == "evaluate":
        _print(run_alerts(stores, AlertSettings.from_env()))
        return 0
    change = acknowledge_alert if args.action == "ack" else resolve_alert
    try:
        alert = change(
            stores.records, stores.state, args.alert_id, by=_operator(args), now=time.time()
        )
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    _print(alert.as_doc())
    return 0


def _add_live_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("api-key", help="create, list or revoke machine API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; the token is shown once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope", action="append", choices=["ingest", "upload"], help="repeat for several"
    )
    create.add_argument("--rate", type=float, help="requests per second (default: settings)")
    create.add_argument("--burst", type=int, help="burst size (default: settings)")
    create.add_argument("--token-file", help="also write the token to this new file (0600)")
    create.add_argument("--by", help="who creates it (default: cli:$USER)")
    key_actions.add_parser("list", help="every key, without secrets")
    revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.add_argument("--by", help="who revokes it (default: cli:$USER)")
    keys.set_defaults(func=cmd_api_key)

    sim = sub.add_parser("simulate", help="send shop events through the ingest API")
    sim.add_argument("--url", default="http://127.0.0.1:8050", help="base URL of the service")
    sim.add_argument("--api-key", help="an ingest API key (default: $MC_API_KEY)")
    sim.add_argument("--rate", type=float, default=5.0, help="events per second")
    sim.add_argument("--count", type=int, help="stop after this many events")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument("--batch-size", type=int, default=1, help=">1 sends NDJSON batches")
    sim.add_argument("--purchase-share", type=float, default=0.04, help="visits that buy")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--allow-remote", action="store_true", help="allow non-loopback URLs")
    sim.set_defaults(func=cmd_simulate)

    sched = sub.add_parser("scheduler", help="run rollups, alerts and collectors until stopped")
    sched.add_argument("--jobs", help="comma-separated subset of pipeline,alerts,collect,daily")
    sched.set_defaults(func=cmd_scheduler)

    alerts = sub.add_parser("alerts", help="list, evaluate, acknowledge or resolve alerts")
    alert_actions = alerts.add_subparsers(dest="action", required=True)
    listing = alert_actions.add_parser("list", help="recent alerts, newest first")
    listing.add_argument("--open", action="store_true", help="open alerts only")
    listing.add_argument("--limit", type=int, default=100)
    alert_actions.add_parser("evaluate", help="evaluate every rule once now")
    for action in ("ack", "resolve"):
        act = alert_actions.add_parser(action, help=f"{action} an alert by id")
        act.add_argument("alert_id")
        act.add_argument("--by", help="who does it (default: cli:$USER)")
    alerts.set_defaults(func=cmd_alerts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mission-control", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate", help="write deterministic sample data into the lake's raw zone"
    )
    gen.add_argument("--customers", type=int, default=100)
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--end", help="last date, YYYY-MM-DD (default: today, UTC)")
    gen.add_argument("--bad", type=int, default=0, help="also write N invalid uploads")
    gen.set_defaults(func=cmd_generate)

    from pipeline.process import default_workers

    process = sub.add_parser(
        "process", help="drain the upload queue in parallel, compact events and metrics"
    )
    process.add_argument(
        "--workers", type=int, default=default_workers(), help="processes (default: the cores)"
    )
    process.add_argument("--batch", type=int, default=32, help="messages per receive")
    process.set_defaults(func=cmd_process)
    sub.add_parser("rollup", help="update the per-date fleet and business rollups").set_defaults(
        func=cmd_rollup
    )
    reconcile = sub.add_parser(
        "reconcile", help="prove every upload is processed or quarantined (lists the lake)"
    )
    reconcile.add_argument(
        "--requeue", action="store_true", help="first queue every upload not yet handled"
    )
    reconcile.set_defaults(func=cmd_reconcile)
    sub.add_parser(
        "bootstrap", help="create the buckets and tables the AWS backend needs"
    ).set_defaults(func=cmd_bootstrap)

    sql = sub.add_parser(
        "sql", help="run SQL over the lake on DuckDB, with the table names Athena has"
    )
    sql.add_argument("query", nargs="?", help='e.g. "SELECT count(*) FROM screen_time"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument(
        "--athena-ddl", action="store_true", help="print the views' Athena DDL instead"
    )
    sql.add_argument(
        "--database", default="mission_control_lake", help="Glue database (--athena-ddl)"
    )
    sql.set_defaults(func=cmd_sql)

    serve = sub.add_parser("serve", help="serve the dashboard with gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8050)
    serve.set_defaults(func=cmd_serve)
    _add_live_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
