"""``next`` after sign-in stays on this site, whatever the browser would make of it."""

from __future__ import annotations

import pytest

from auth.session import safe_next


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/revenue",
        "/customers/c-001?range=7d&tab=apps",
        "/path%2F%2Fwith-encoded-slashes",
    ],
)
def test_site_paths_are_kept(target):
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "//evil.example",
        "//evil.example/path",
        "https://evil.example/",
        "http:/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "javascript:alert(1)",
        "revenue",
    ],
)
def test_anything_else_becomes_the_home_page(target):
    assert safe_next(target) == "/"
