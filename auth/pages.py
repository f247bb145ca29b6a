"""Plain HTML pages for sign-in errors, sign-out and the admin views (no Dash).

These pages must render when nothing else works (provider down, no session, no role),
so they are self-contained: inline CSS, no scripts, every value escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from flask import Response
from markupsafe import Markup, escape

# What a 503 asks clients to wait before retrying: about one provider deadline
# (OIDC_TIMEOUT_SECONDS' default), by when a refresh under way has finished or given up.
RETRY_AFTER_SECONDS = 5

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;
color:#1d2330}
main{max-width:56rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin-top:0}
.actions a{display:inline-block;margin-right:1rem;padding:.45rem .9rem;border-radius:4px;
background:#1f6feb;color:#fff;text-decoration:none}
.actions a.secondary{background:#e7eaf0;color:#1d2330}
.actions button{font:inherit;padding:.45rem .9rem;border:0;border-radius:4px;background:#1f6feb;
color:#fff;cursor:pointer}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e2e5ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.muted{color:#5b6475;font-size:.85rem}
"""


def _document(title: str, body: Markup) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · Mission Control</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _links(links: Sequence[tuple[str, str]]) -> Markup:
    if not links:
        return Markup("")
    items = [
        Markup("<a href='{}' class='{}'>{}</a>").format(
            href, "" if index == 0 else "secondary", label
        )
        for index, (label, href) in enumerate(links)
    ]
    return Markup("<p class='actions'>") + Markup("").join(items) + Markup("</p>")


def _value(value: object) -> Markup:
    if isinstance(value, str):
        return escape(value)
    return Markup("<pre>{}</pre>").format(json.dumps(value, indent=2, sort_keys=True, default=str))


def claims_table(claims: Mapping[str, object]) -> Markup:
    rows = [
        Markup("<tr><th><code>{}</code></th><td>{}</td></tr>").format(name, _value(value))
        for name, value in sorted(claims.items())
    ]
    return Markup("<table>") + Markup("").join(rows) + Markup("</table>")


def html_page(
    title: str,
    message: str | Markup,
    *,
    status: int = 200,
    links: Sequence[tuple[str, str]] = (),
    extra: Markup | None = None,
    reference: str = "",
) -> Response:
    """A small page: heading, message, optional extra HTML and action links."""
    body = Markup("<h1>{}</h1><p>{}</p>").format(title, message)
    if extra is not None:
        body += extra
    body += _links(links)
    if reference:
        body += Markup("<p class='muted'>Reference: <code>{}</code></p>").format(reference)
    response = Response(_document(title, body), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def error_page(
    title: str,
    message: str,
    *,
    status: int,
    retry_url: str | None = None,
    reference: str = "",
    extra: Markup | None = None,
) -> Response:
    links = [("Try again", retry_url)] if retry_url else []
    return html_page(title, message, status=status, links=links, extra=extra, reference=reference)


def refusal_page(
    *, claim_path: str, claim_value: object, claims: Mapping[str, object], retry_url: str
) -> Response:
    """A signed-in identity whose groups map to no role: say so and show what arrived."""
    extra = Markup(
        "<p>The role is read from the claim <code>{}</code>, which carried: <code>{}</code>. "
        "None of these is mapped to a Mission Control role. Ask an administrator to add "
        "you to a mapped group, then sign in again.</p><h2>Claims received</h2>{}"
    ).format(claim_path, json.dumps(claim_value), claims_table(claims))
    return html_page(
        "No access",
        "You signed in, but your account has no Mission Control role.",
        status=403,
        links=[("Sign in again", retry_url)],
        extra=extra,
    )


def sign_out_page(action: str, cancel: str, everywhere_action: str | None = None) -> Response:
    """What GET /logout shows: signing out is a POST from this page, never a link that any
    site could make a browser follow."""
    form = Markup(
        "<form method='post' action='{}' class='actions'><button type='submit'>Sign out</button>"
        " <a href='{}' class='secondary'>Stay signed in</a></form>"
    ).format(action, cancel)
    if everywhere_action:
        form += Markup(
            "<form method='post' action='{}' class='actions'><button type='submit'>"
            "Sign out everywhere</button> <span class='muted'>ends your sessions in every "
            "browser and device</span></form>"
        ).format(everywhere_action)
    return html_page("Sign out?", "Sign out of Mission Control on this browser?", extra=form)


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def sessions_table(
    sessions: Iterable[tuple[str, Mapping[str, object]]],
    *,
    end_action: str,
    current_key: str | None,
    expires_at: Callable[[Mapping[str, object]], float],
) -> Markup:
    """Live sessions, each with a button (a POST form) ending it; keys shown shortened."""
    rows = []
    for key, doc in sessions:
        end = Markup(
            "<form method='post' action='{}' class='actions'><input type='hidden' name='key' "
            "value='{}'><button type='submit'>End</button></form>"
        ).format(end_action, key)
        rows.append(
            Markup(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                "<td class='muted'>{}</td><td class='muted'>{}{}</td><td>{}</td></tr>"
            ).format(
                doc.get("email") or doc.get("sub") or "-",
                doc.get("role") or "-",
                _when(doc.get("signed_in_at")),
                _when(doc.get("seen_at")),
                _when(expires_at(doc)),
                doc.get("ip") or "-",
                doc.get("user_agent") or "-",
                key[:12],
                " (this session)" if key == current_key else "",
                end,
            )
        )
    header = Markup(
        "<table><tr><th>user</th><th>role</th><th>signed in (UTC)</th><th>last active</th>"
        "<th>ends</th><th>address</th><th>browser</th><th>session</th><th></th></tr>"
    )
    return header + Markup("").join(rows) + Markup("</table>")


def audit_table(entries: Iterable[tuple[str, Mapping[str, object]]]) -> Markup:
    rows = []
    for key, entry in entries:
        details = entry.get("details") or {}
        rows.append(
            Markup(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                "<td class='muted'>{}</td></tr>"
            ).format(
                entry.get("at", ""),
                entry.get("event", ""),
                entry.get("who") or "-",
                entry.get("role") or "-",
                _value(details) if details else "",
                key,
            )
        )
    header = Markup(
        "<table><tr><th>when (UTC)</th><th>event</th><th>who</th><th>role</th>"
        "<th>details</th><th>key</th></tr>"
    )
    return header + Markup("").join(rows) + Markup("</table>")
