"""Fault tests: the dashboard on gunicorn over the AWS backend, with a fault proxy in front
of each server, and a Chromium page polling it.

The servers here are this package's own (the session-wide ones from tests/plugins/servers.py
stay untouched, since these tests stop theirs). DynamoDB Local runs with a database folder
instead of ``-inMemory``: a stop and start then behaves as a real outage does, tables and
items still there afterwards.

The dashboard talks to both servers through ``FaultProxy`` endpoints, with a small botocore
budget (connect 0.5 s, read 1 s, 2 attempts), so a test can slow or cut either path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from data_access import aws
from data_access.settings import DataSettings
from data_access.stores import Stores
from devtools.servers import DynamoDBLocal, SeaweedS3
from pipeline.bootstrap import bootstrap
from tests.plugins.browser import (
    VIEWPORT,
    ConsoleLog,
    DashboardServer,
    SampleLake,
)
from tests.plugins.faults import FaultProxy, fault_proxy  # noqa: F401  (a fixture)
from tests.plugins.servers import aws_env_for, clients_for, start_server

SAMPLE_CUSTOMERS = 4
SAMPLE_DAYS = 5
SAMPLE_SEED = 11
# The botocore budget of the dashboard under test: one store call gives up after about
# attempts x (connect + read) seconds.
BUDGET_ENV = {
    "AWS_CONNECT_TIMEOUT_SECONDS": "0.5",
    "AWS_READ_TIMEOUT_SECONDS": "1",
    "AWS_MAX_ATTEMPTS": "2",
}


class PersistentDynamoDBLocal(DynamoDBLocal):
    """DynamoDB Local keeping its tables in a folder, so they outlive a restart."""

    name = "dynamodb-local-persistent"

    def command(self) -> list[str]:
        data = self.workdir / "db"
        data.mkdir(exist_ok=True)
        command = super().command()
        at = command.index("-inMemory")
        return [*command[:at], "-dbPath", str(data), *command[at + 1 :]]


@dataclass
class AwsStack:
    dynamodb: DynamoDBLocal
    seaweed: SeaweedS3
    dynamodb_proxy: FaultProxy
    s3_proxy: FaultProxy
    settings: DataSettings  # direct to the servers: for the test's own reads and writes
    stores: Stores
    dashboard_env: dict[str, str]  # through the proxies: for the dashboard
    end_date: dt.date

    def heal(self) -> None:
        """Both servers up and both proxies passing traffic, as at the start."""
        for proxy in (self.dynamodb_proxy, self.s3_proxy):
            proxy.heal()
        for server in (self.dynamodb, self.seaweed):
            if not server.running:
                server.start()
            assert server.wait_until_answers(60), f"{server.name} did not come back"


def seed_sample(stores: Stores, end_date: dt.date) -> None:
    """Generate, process, compact and roll up a small sample, as ``make sample`` does."""
    from pipeline.events import compact_events, compact_metrics
    from pipeline.generate import generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    generate(
        stores.lake,
        queue=stores.queue,
        customers=SAMPLE_CUSTOMERS,
        days=SAMPLE_DAYS,
        seed=SAMPLE_SEED,
        end_date=end_date,
        bad_uploads=1,
        hosts=1,
    )
    drain(stores)
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)


@pytest.fixture(scope="module")
def aws_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsStack]:
    with contextlib.ExitStack() as cleanup, pytest.MonkeyPatch.context() as patch:
        dynamodb = start_server(PersistentDynamoDBLocal)
        cleanup.callback(dynamodb.cleanup)
        seaweed = start_server(SeaweedS3)
        cleanup.callback(seaweed.cleanup)
        dynamodb_proxy = FaultProxy(dynamodb.port).start()
        cleanup.callback(dynamodb_proxy.stop)
        s3_proxy = FaultProxy(seaweed.s3_port).start()
        cleanup.callback(s3_proxy.stop)

        direct = {**aws_env_for(dynamodb, seaweed, tmp_path_factory), **BUDGET_ENV}
        # boto3 and pyarrow in this process read credentials from the environment.
        for name, value in direct.items():
            patch.setenv(name, value)
        settings = DataSettings.from_env(direct)
        clients = clients_for(settings)
        bootstrap(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        stores = aws.build_aws_stores(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        cleanup.callback(stores.lake.close)  # type: ignore[attr-defined]
        end_date = dt.datetime.now(dt.UTC).date()
        seed_sample(stores, end_date)

        dashboard_env = {
            **direct,
            "AWS_ENDPOINT_URL_S3": s3_proxy.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_proxy.endpoint,
        }
        yield AwsStack(
            dynamodb, seaweed, dynamodb_proxy, s3_proxy, settings, stores, dashboard_env, end_date
        )


class AwsDashboardServer(DashboardServer):
    """``DashboardServer`` over the AWS backend: the sample lake argument only names the
    folder for HOME; data comes from S3 and DynamoDB through ``extra_env``."""

    name = "dashboard-aws"


@pytest.fixture(scope="module")
def aws_dashboard(
    aws_stack: AwsStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AwsDashboardServer]:
    root = tmp_path_factory.mktemp("aws-dashboard")
    placeholder = SampleLake(
        root=root,
        settings=DataSettings(lake_root=root / "unused-lake", state_db=root / "unused.sqlite"),
        end_date=aws_stack.end_date,
        customers=SAMPLE_CUSTOMERS,
        days=SAMPLE_DAYS,
        seed=SAMPLE_SEED,
    )
    server = AwsDashboardServer(placeholder, extra_env=aws_stack.dashboard_env)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def healed(aws_stack: AwsStack) -> Iterator[AwsStack]:
    """The stack healed before and after the test, whatever the test broke."""
    aws_stack.heal()
    yield aws_stack
    aws_stack.heal()


@pytest.fixture
def aws_page(browser, aws_dashboard: AwsDashboardServer) -> Iterator[object]:
    context = browser.new_context(
        viewport=VIEWPORT, color_scheme="light", base_url=aws_dashboard.url
    )
    context.set_default_timeout(20_000)
    tab = context.new_page()
    console = ConsoleLog()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_page_error)
    tab.console = console
    try:
        yield tab
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing fault test gets the dashboard's log (without access lines) in its report."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    server = funcargs.get("aws_dashboard") or funcargs.get("live_server")
    if report.failed and server is not None:
        lines = [
            line for line in server.log_tail(400_000).splitlines() if "gunicorn.access" not in line
        ]
        report.sections.append(("dashboard server log", "\n".join(lines[-80:])))
    return report
