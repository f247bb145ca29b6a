"""Request hooks as values, registered in one order that ``create_app`` declares.

Modules hand back their hooks instead of placing themselves in Flask's lists, so where each
one runs is read in one place. Flask runs ``before_request`` hooks in registration order and
``after_request``/``teardown_request`` hooks in reverse; ``register_hooks`` takes every list in
the order the hooks are to run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Flask, Response

BeforeHook = Callable[[], Response | None]
AfterHook = Callable[[Response], Response]
TeardownHook = Callable[[BaseException | None], None]


@dataclass(frozen=True)
class RequestHooks:
    """Hooks in the order they run: ``before`` first to last, then ``after``, then ``teardown``."""

    before: tuple[BeforeHook, ...] = ()
    after: tuple[AfterHook, ...] = ()
    teardown: tuple[TeardownHook, ...] = ()

    def __add__(self, other: RequestHooks) -> RequestHooks:
        return RequestHooks(
            before=self.before + other.before,
            after=self.after + other.after,
            teardown=self.teardown + other.teardown,
        )


def chain(parts: Iterable[RequestHooks]) -> RequestHooks:
    """Several modules' hooks, one after another."""
    total = RequestHooks()
    for part in parts:
        total += part
    return total


def register_hooks(server: Flask, hooks: RequestHooks) -> None:
    """Register ``hooks`` so that each list runs in the order given."""
    for before in hooks.before:
        server.before_request(before)
    # Flask runs these last-registered first.
    for after in reversed(hooks.after):
        server.after_request(after)
    for teardown in reversed(hooks.teardown):
        server.teardown_request(teardown)


def registered_hooks(server: Flask) -> RequestHooks:
    """The app-wide hooks in the order Flask will run them (blueprint hooks left out)."""
    return RequestHooks(
        before=tuple(server.before_request_funcs.get(None, ())),
        after=tuple(reversed(server.after_request_funcs.get(None, ()))),
        teardown=tuple(reversed(server.teardown_request_funcs.get(None, ()))),
    )
