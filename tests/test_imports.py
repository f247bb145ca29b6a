"""The import direction README.md's Architecture table states, checked by import-linter
against the contracts in pyproject.toml's ``[tool.importlinter]``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from devtools.servers import REPO_ROOT

CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_no_import_crosses_the_stated_direction() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(REPO_ROOT / "pyproject.toml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken." in done.stdout


def test_contracts_cover_every_package_of_ours() -> None:
    # A new top-level package outside root_packages would be free of every contract.
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    assert packages == set(CONFIG["root_packages"])
