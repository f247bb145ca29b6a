"""Fuzz the ``next`` parameter of the sign-in flow: never a redirect off the site.

``tests/auth`` pins known open-redirect tricks, replayed callbacks and session fixation
against a real provider; this adds the property over arbitrary text: whatever ``next`` is,
where a browser would go after ``/login`` is this site. "Where a browser would go" is
modelled as the URL Standard does: leading and trailing C0 controls and spaces stripped,
tabs and newlines removed anywhere, backslashes read as slashes in special schemes.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from auth.session import safe_next
from tests.fuzz.conftest import FUZZ, FuzzSite

SITE = "https://dashboard.example"
TRICKY_STARTS = st.sampled_from(
    [
        "/",
        "//",
        "/\\",
        "\\\\",
        "/\t/",
        "/\n/",
        " //",
        "\x00//",
        "/%2F",
        "/%5C",
        "https:",
        "http:/",
        "javascript:",
        "data:",
        "/.//",
        "/..//",
        "\u3002",  # ideographic full stop
        "/\uff0f",  # full-width solidus
        "@",
    ]
)
NEXT_VALUES = (
    st.text()
    | st.builds(lambda a, b: a + b, TRICKY_STARTS, st.text(max_size=20))
    | st.builds(lambda a, b: a + "evil.example" + b, TRICKY_STARTS, st.text(max_size=5))
)


def browser_resolves(location: str, base: str = SITE) -> str:
    """The URL a browser navigates to for a ``Location`` header, per the URL Standard."""
    cleaned = location.strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f"
        "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )
    cleaned = cleaned.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    return urljoin(base + "/", cleaned)


def _stays_on_site(location: str, base: str = SITE) -> bool:
    target = urlsplit(browser_resolves(location, base))
    origin = urlsplit(base)
    return (target.scheme, target.netloc) == (origin.scheme, origin.netloc)


def test_the_model_recognises_known_escapes() -> None:
    # The property below is only as good as its model of the browser.
    for escape in ("//evil.example", "/\\evil.example", "/\t/evil.example", " //evil.example"):
        assert not _stays_on_site(escape), escape
    assert _stays_on_site("/revenue?range=7d")


@FUZZ
@given(NEXT_VALUES)
def test_safe_next_never_leaves_the_site(target: str) -> None:
    kept = safe_next(target)
    assert kept == "/" or kept == target
    assert kept.startswith("/")
    assert _stays_on_site(kept), (target, kept)


@FUZZ
@given(NEXT_VALUES)
def test_login_redirects_only_to_this_site(fuzz_site: FuzzSite, target: str) -> None:
    # Dev mode signs in at once, so /login redirects straight to ``next``.
    response = fuzz_site.client.get("/login", query_string={"next": target})
    assert response.status_code in (302, 303), response.status_code
    location = response.headers["Location"]
    assert _stays_on_site(location, "http://localhost"), (target, location)
