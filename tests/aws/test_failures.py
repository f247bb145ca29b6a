"""Outages of DynamoDB and S3 surface as StoreUnavailable, and the stores recover;
the server harness fails loudly when a server is missing and never leaves one behind.

These tests stop and pause their own servers, so the session-wide ones stay untouched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from data_access import aws
from data_access.settings import DataSettings
from data_access.stores import Stores, StoreUnavailable, UploadRecord
from devtools.servers import (
    DynamoDBLocal,
    SeaweedS3,
    ServerUnavailable,
    find_dynamodb_local_jar,
    find_java,
)
from pipeline.bootstrap import bootstrap
from tests.plugins.servers import aws_env_for, clients_for, start_server

pytestmark = pytest.mark.aws


@dataclass
class OwnBackend:
    dynamodb: DynamoDBLocal
    seaweed: SeaweedS3
    settings: DataSettings
    stores: Stores


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBackend]:
    with contextlib.ExitStack() as cleanup, pytest.MonkeyPatch.context() as patch:
        dynamodb = start_server(DynamoDBLocal)
        cleanup.callback(dynamodb.cleanup)
        seaweed = start_server(SeaweedS3)
        cleanup.callback(seaweed.cleanup)
        env = {
            **aws_env_for(dynamodb, seaweed, tmp_path_factory),
            # A small budget keeps the outage tests short; the behaviour is the same.
            "AWS_CONNECT_TIMEOUT_SECONDS": "0.5",
            "AWS_READ_TIMEOUT_SECONDS": "1",
            "AWS_MAX_ATTEMPTS": "2",
        }
        for name, value in env.items():
            patch.setenv(name, value)
        settings = DataSettings.from_env(env)
        bootstrap(settings)
        clients = clients_for(settings)  # with the small timeout budget above
        stores = aws.build_aws_stores(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        cleanup.callback(stores.lake.close)  # type: ignore[attr-defined]
        yield OwnBackend(dynamodb, seaweed, settings, stores)


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """Freeze a server: it keeps its socket open but never answers."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def _record() -> UploadRecord:
    return UploadRecord("c1", "2024-05-01", "p", "r", 1, 1, 1, 1_714_521_600.0, "h")


def test_dynamodb_down_raises_store_unavailable_then_recovers(backend: OwnBackend) -> None:
    stores = backend.stores
    stores.cache.put("k", b"before", ttl_seconds=60)
    assert stores.cache.get("k") == b"before"

    backend.dynamodb.stop()
    try:
        with pytest.raises(StoreUnavailable):
            stores.cache.get("k")
        with pytest.raises(StoreUnavailable):
            stores.cache.put("k", b"during", ttl_seconds=60)
        with pytest.raises(StoreUnavailable):
            stores.index.put(_record())
        with pytest.raises(StoreUnavailable):
            stores.state.get_many(["a", "b"])
    finally:
        backend.dynamodb.start()

    # DynamoDB Local runs in memory: the restart lost the tables until bootstrap runs again.
    with pytest.raises(StoreUnavailable):
        stores.cache.get("k")
    changes = bootstrap(backend.settings)
    assert f"created table {aws.CACHE_TABLE.table_name(backend.settings)} (on-demand)" in changes
    stores.cache.put("k", b"after", ttl_seconds=60)
    assert stores.cache.get("k") == b"after"
    stores.index.put(_record())
    assert stores.index.get("c1", "2024-05-01") == _record()


def test_dynamodb_that_stops_answering_times_out_as_unavailable(backend: OwnBackend) -> None:
    stores = backend.stores
    stores.state.put("version:events", "7")
    pid = backend.dynamodb.pid
    assert pid is not None
    with paused(pid):
        with pytest.raises(StoreUnavailable):
            stores.state.get("version:events")
        with pytest.raises(StoreUnavailable):
            stores.cache.get("anything")
    assert backend.dynamodb.wait_until_answers()
    assert stores.state.get("version:events") == "7"


def test_s3_down_raises_store_unavailable_then_recovers(backend: OwnBackend) -> None:
    lake = backend.stores.lake
    table = pa.table({"minutes": [1, 2, 3]})
    lake.write_bytes("raw/screen_time/c1/2024-05-01.json", b'{"ok": true}')
    lake.write_table("processed/screen_time/c1/2024-05-01/aggregated.parquet", table)

    backend.seaweed.stop()
    try:
        with pytest.raises(StoreUnavailable):
            lake.read_bytes("raw/screen_time/c1/2024-05-01.json")
        with pytest.raises(StoreUnavailable):
            lake.write_bytes("raw/screen_time/c1/2024-05-02.json", b"{}")
        with pytest.raises(StoreUnavailable):
            list(lake.list("raw/"))
        with pytest.raises(StoreUnavailable):
            lake.exists("raw/screen_time/c1/2024-05-01.json")
        # An outage is not a missing object: read_table must not return an empty table.
        with pytest.raises(StoreUnavailable):
            lake.read_table(
                [
                    "processed/screen_time/c1/2024-05-01/aggregated.parquet",
                    "processed/screen_time/c2/2024-05-01/aggregated.parquet",
                ]
            )
    finally:
        backend.seaweed.start()

    # SeaweedFS keeps its data folder, so the objects written before the outage are back.
    assert lake.read_bytes("raw/screen_time/c1/2024-05-01.json") == b'{"ok": true}'
    read = lake.read_table(["processed/screen_time/c1/2024-05-01/aggregated.parquet"])
    assert read.column("minutes").to_pylist() == [1, 2, 3]
    lake.write_bytes("raw/screen_time/c1/2024-05-02.json", b"{}")
    assert lake.exists("raw/screen_time/c1/2024-05-02.json")


# ---------------------------------------------------------------------- the harness itself

_ORPHAN_SCRIPT = """
import os, sys
from devtools.servers import ServerProcess

class Sleeper(ServerProcess):
    name = "sleeper"
    def command(self): return ["sleep", "120"]
    def ports(self): return []
    def answers(self): return True

server = Sleeper()
server.start()
print(server.pid, flush=True)
os.kill(os.getpid(), 9)  # die as a killed pytest would: no atexit, no cleanup
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its reaper is dead for our purpose.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_server_dies_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the killed script cannot clean up
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    server_pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server_pid)


def test_missing_npm_packages_name_the_install_script(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match=r"scripts/install-test-deps\.sh"):
        find_dynamodb_local_jar(tmp_path)


def test_missing_java_names_the_install_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerUnavailable, match=r"scripts/install-test-deps\.sh"):
        find_java()
