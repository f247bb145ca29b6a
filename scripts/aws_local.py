"""Try the AWS backend without an account: ``python -m scripts.aws_local`` (``make run-aws-local``).

Starts DynamoDB Local and SeaweedFS (S3) on loopback, creates the bucket and tables with the
same ``bootstrap`` an AWS account gets, loads sample data through the real pipeline
(generate -> process -> compact -> roll up, ``DATA_BACKEND=aws``), then serves the dashboard
with gunicorn on 127.0.0.1. Ctrl-C (or SIGTERM) stops gunicorn, then both servers.

The servers are the ones the tests start (``devtools/servers.py``;
``scripts/install-test-deps.sh`` installs Java and the DynamoDB Local jar). DynamoDB Local
runs in memory: every start begins from an empty lake and empty tables. ``--env-file``
writes the variables that point ``mission-control`` at the running servers, so another
shell can ``set -a; . FILE`` and run ``mission-control process`` or ``rollup`` against them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

import boto3

from data_access import aws
from data_access.settings import DataSettings
from devtools.servers import (
    LOOPBACK,
    REPO_ROOT,
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    DynamoDBLocal,
    SeaweedS3,
    ServerUnavailable,
    die_with_parent,
    gunicorn_command,
)

BUCKET = "mission-control-local"
TABLE_PREFIX = "mission-control-local"
GUNICORN_STOP_SECONDS = 30.0


class Interrupted(Exception):
    """SIGTERM, handled like Ctrl-C: stop what was started, then exit."""


def backend_env(dynamodb: DynamoDBLocal, seaweed: SeaweedS3, scratch: Path) -> dict[str, str]:
    """What the dashboard and ``mission-control`` need to use these servers as the AWS backend."""
    no_profile = scratch / "no-aws-config"
    return {
        "DATA_BACKEND": "aws",
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.endpoint,
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_REGION": TEST_REGION,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "S3_BUCKET": BUCKET,
        "TABLE_PREFIX": TABLE_PREFIX,
        # Never a developer's real profile, never an instance metadata lookup.
        "AWS_CONFIG_FILE": str(no_profile),
        "AWS_SHARED_CREDENTIALS_FILE": str(no_profile),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def dashboard_env(backend: Mapping[str, str], scratch: Path) -> dict[str, str]:
    """The environment gunicorn runs in: the caller's, the backend's, a local-only sign-in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(backend)
    env.setdefault("AUTH_MODE", "dev")  # no identity provider; answers on loopback only
    env.setdefault("SECRET_KEY", secrets.token_hex(32))
    env.setdefault("WEB_CONCURRENCY", "2")
    env["HOME"] = str(scratch)  # gunicorn and boto3 write nothing into the user's home
    return env


def load_sample(
    settings: DataSettings,
    *,
    customers: int,
    days: int,
    bad_uploads: int,
    seed: int,
    report: Callable[[str], None],
) -> None:
    """Bootstrap the bucket and tables, then generate, process and roll up sample data."""
    from pipeline.bootstrap import bootstrap
    from pipeline.events import compact_events, compact_metrics
    from pipeline.generate import generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    session = boto3.Session(
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        region_name=settings.aws_region,
    )
    s3 = aws.s3_client(settings, session)
    dynamodb = aws.dynamodb_client(settings, session)
    for line in bootstrap(settings, s3=s3, dynamodb=dynamodb):
        report(f"bootstrap: {line}")
    stores = aws.build_aws_stores(settings, s3=s3, dynamodb=dynamodb)
    today = dt.datetime.now(dt.UTC).date()
    started = time.perf_counter()
    generated = generate(
        stores.lake,
        queue=stores.queue,
        customers=customers,
        days=days,
        seed=seed,
        end_date=today,
        bad_uploads=bad_uploads,
        hosts=1,
    )
    report(f"generated {generated.describe()}")
    processed = drain(stores)
    report(
        f"processed {processed.processed} uploads, quarantined {processed.quarantined} "
        f"({processed.uploads_per_second:.0f}/s)"
    )
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)
    report(f"sample loaded into S3 and DynamoDB in {time.perf_counter() - started:.1f} s")
    stores.lake.close()  # type: ignore[attr-defined]


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def local_servers(report: Callable[[str], None]) -> Iterator[tuple[DynamoDBLocal, SeaweedS3]]:
    """Both servers, started in turn and always stopped and removed on the way out."""
    with contextlib.ExitStack() as cleanup:
        dynamodb = DynamoDBLocal()
        cleanup.callback(dynamodb.cleanup)
        seaweed = SeaweedS3()
        cleanup.callback(seaweed.cleanup)
        cleanup.callback(report, "stopping DynamoDB Local and SeaweedFS")  # first on the way out
        dynamodb.start()
        report(f"DynamoDB Local on {dynamodb.endpoint}")
        seaweed.start()
        report(f"SeaweedFS S3 on {seaweed.endpoint}")
        yield dynamodb, seaweed


def serve(port: int, env: Mapping[str, str]) -> int:
    """Run gunicorn until it exits or this process is interrupted; return its exit code."""
    command = gunicorn_command("wsgi:server", port)
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=dict(env), preexec_fn=die_with_parent(os.getpid())
    )
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            # Ctrl-C reached gunicorn too (same process group); SIGTERM covers a kill of us alone.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(GUNICORN_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.aws_local", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8050, help="dashboard port on 127.0.0.1")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--bad", type=int, default=8, help="invalid uploads, to see quarantine")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--env-file", type=Path, help="write the backend variables here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def report(line: str) -> None:
        print(f"aws-local: {line}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mc-aws-local-") as scratch_name,
            local_servers(report) as (dynamodb, seaweed),
        ):
            scratch = Path(scratch_name)
            backend = backend_env(dynamodb, seaweed, scratch)
            settings = DataSettings.from_env(backend)
            load_sample(
                settings,
                customers=args.customers,
                days=args.days,
                bad_uploads=args.bad,
                seed=args.seed,
                report=report,
            )
            if args.env_file is not None:
                write_env_file(args.env_file, backend)
                report(f"backend variables in {args.env_file}")
            report(f"dashboard on http://{LOOPBACK}:{args.port} (Ctrl-C stops everything)")
            return serve(args.port, dashboard_env(backend, scratch))
    except ServerUnavailable as exc:
        report(str(exc))
        return 1
    except (KeyboardInterrupt, Interrupted):
        report("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
