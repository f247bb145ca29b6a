"""The few lines `make run` prints once the dashboard answers: where it is, who you are signed
in as, where the access log went and how to stop.

The terminal of `make run` also carries the scheduler's and the simulator's JSON logs; this
banner is the part a person reads. Run by scripts/run-local.sh in the background:

    python -m scripts.dev_banner --url http://127.0.0.1:8050
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from auth.roles import ROLES
from auth.settings import AuthSettings

WAIT_SECONDS = 120.0


def sign_in_line(auth: AuthSettings) -> str:
    """How this server signs people in, in words."""
    if auth.mode == "dev":
        return f"{auth.dev_user} as {auth.dev_role} (development sign-in, no identity provider)"
    if auth.mode == "oidc":
        return f"single sign-on through {auth.oidc_issuer}"
    return "signed in by the load balancer (ALB header)"


def banner(url: str, env: Mapping[str, str], *, root: Path | None = None) -> str:
    """The banner for a server at ``url`` started with ``env``."""
    auth = AuthSettings.from_env(env)
    lines = [
        f"Mission Control is ready: {url}",
        f"  Sign-in:      {sign_in_line(auth)}",
    ]
    if auth.mode == "dev":
        others = [role for role in ROLES if role != auth.dev_role]
        lines.append(f"  Another role: DEV_ROLE={others[0]} make run  ({', '.join(ROLES)})")
    access_log = env.get("ACCESS_LOG") or "-"
    if access_log != "-":
        path = Path(access_log)
        if root is not None and path.is_absolute() and path.is_relative_to(root):
            path = path.relative_to(root)
        lines.append(f"  Access log:   {path} (page polls and simulator posts)")
    lines.append("  Stop:         Ctrl-C")
    width = max(len(line) for line in lines)
    rule = "=" * width
    return "\n".join([rule, *lines, rule])


def wait_until_answering(url: str, timeout_seconds: float = WAIT_SECONDS) -> bool:
    """True once ``url``/healthz answers 200, False if it has not within the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # a poll interval, not a wait for something to happen
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--timeout", type=float, default=WAIT_SECONDS)
    args = parser.parse_args(argv)
    if not wait_until_answering(args.url, args.timeout):
        print(
            f"The dashboard did not answer at {args.url} within {args.timeout:.0f} s; "
            "see the log above.",
            file=sys.stderr,
        )
        return 1
    print("\n" + banner(args.url, os.environ, root=Path.cwd()) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
