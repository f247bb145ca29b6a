"""Sign-in, callback, sign-out and the admin pages, as one blueprint named ``auth``."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, g, redirect, request, session, url_for
from markupsafe import Markup

from auth.alb import ALB_SESSION_COOKIE_PREFIX
from auth.context import (
    audit_as,
    auth_state,
    current_user,
    login_url,
    require_role,
    session_store_unavailable,
)
from auth.oidc import SignInFailed
from auth.pages import (
    audit_table,
    claims_table,
    error_page,
    html_page,
    refusal_page,
    sessions_table,
    sign_out_page,
)
from auth.roles import User, claim_at_path, user_from_claims
from auth.session import (
    NEXT_KEY,
    SessionStore,
    SessionStoreUnavailable,
    cookie_session_key,
    end_session,
    requested_path,
    safe_next,
    start_session,
    user_of,
)

log = logging.getLogger(__name__)

FAILURE_TITLES = {
    "cancelled": "Sign-in cancelled",
    "state-mismatch": "Sign-in expired",
    "provider-unreachable": "Identity provider unavailable",
    "provider-busy": "Identity provider busy",
    "issuer-mismatch": "Sign-in misconfigured",
}
MAX_AUDIT_ROWS = 1000
# The load balancer splits its session cookie into shards named -0, -1, ...
ALB_COOKIE_SHARDS = 4


def _external_url(endpoint: str) -> str:
    """An absolute URL for one of our routes, on the host of OIDC_REDIRECT_URI if set."""
    configured = auth_state().settings.oidc_redirect_uri
    if configured:
        parts = urlsplit(configured)
        return f"{parts.scheme}://{parts.netloc}{url_for(endpoint)}"
    return url_for(endpoint, _external=True)


def _sign_in_failed(failure: SignInFailed, target: str) -> Response:
    log.warning("sign-in failed (%s): %s", failure.reason, failure.detail or failure.message)
    audit_as(None, "sign-in-failed", reason=failure.reason, detail=failure.detail)
    return error_page(
        FAILURE_TITLES.get(failure.reason, "Sign-in failed"),
        failure.message,
        status=failure.status,
        retry_url=login_url(target),
        reference=failure.reason,
    )


def login() -> Response:
    state = auth_state()
    target = safe_next(request.args.get("next"))
    if current_user() is not None or state.oidc is None:
        # Signed in already, or the load balancer / dev mode does the signing in.
        return redirect(target)
    session[NEXT_KEY] = target
    try:
        return state.oidc.begin(_external_url("auth.callback"))
    except SignInFailed as failure:
        return _sign_in_failed(failure, target)


def callback() -> Response:
    state = auth_state()
    if state.oidc is None:
        abort(404)
    settings = state.settings
    target = safe_next(session.get(NEXT_KEY))
    try:
        signed_in = state.oidc.finish()
    except SignInFailed as failure:
        return _sign_in_failed(failure, target)
    claims = signed_in.claims
    person = user_from_claims(claims, settings)
    if not person.role:
        session.clear()
        claim_value = claim_at_path(claims, settings.oidc_roles_claim)
        log.warning(
            "sign-in refused for %s: claim %s=%r maps to no role",
            person.label,
            settings.oidc_roles_claim,
            claim_value,
        )
        audit_as(
            person,
            "refused",
            reason="no mapped role",
            claim=settings.oidc_roles_claim,
            value=claim_value,
        )
        return refusal_page(
            claim_path=settings.oidc_roles_claim,
            claim_value=claim_value,
            claims=claims,
            retry_url=login_url(target),
        )
    assert state.sessions is not None  # AUTH_MODE=oidc has a session store
    try:
        key = start_session(state.sessions, person, id_token=signed_in.id_token)
    except SessionStoreUnavailable as exc:
        log.error("sign-in of %s could not be stored: %s", person.label, exc)
        session.clear()
        return session_store_unavailable()
    g.user = person
    audit_as(person, "sign-in", method="oidc", session=key[:8])
    return redirect(target)


def logout() -> Response:
    state = auth_state()
    if request.method != "POST":
        # A cross-site link or meta refresh must not sign anyone out: GET only asks.
        everywhere = url_for("auth.logout_everywhere") if state.sessions is not None else None
        return sign_out_page(url_for("auth.logout"), "/", everywhere)
    user = current_user()
    id_token = ""
    if state.sessions is not None:
        if g.get("session_store_down"):
            return session_store_unavailable()  # the cookie stays: signing out can be retried
        try:
            id_token = end_session(state.sessions)
        except SessionStoreUnavailable as exc:
            log.error("sign-out of %s failed: %s", user.label if user else "-", exc)
            return session_store_unavailable()
    else:
        session.clear()
    g.user = None
    if user is not None:
        audit_as(user, "sign-out", method=state.settings.mode)
    return _leave(user, id_token)


def logout_everywhere() -> Response:
    """End every session of the signed-in user (all browsers and devices), then leave."""
    state = auth_state()
    user = current_user()
    if state.sessions is None:
        abort(404)  # only AUTH_MODE=oidc keeps sessions here
    assert user is not None  # the guard let us through
    try:
        id_token = end_session(state.sessions)
        ended = 1 + state.sessions.end_all(user.subject)
    except SessionStoreUnavailable as exc:
        log.error("sign-out everywhere of %s failed: %s", user.label, exc)
        return session_store_unavailable()
    g.user = None
    audit_as(user, "sign-out-everywhere", sessions=ended)
    return _leave(user, id_token)


def _leave(user: User | None, id_token: str) -> Response:
    """Where the browser goes once signed out here: the provider's logout, or our page."""
    state = auth_state()
    signed_out = url_for("auth.signed_out")
    if state.oidc is not None and user is not None:
        provider_logout = state.oidc.logout_url(id_token, _external_url("auth.signed_out"))
        return _continue_at_provider(provider_logout) if provider_logout else redirect(signed_out)
    if state.settings.mode == "alb":
        logout_url = state.settings.alb_logout_url
        response = _continue_at_provider(logout_url) if logout_url else redirect(signed_out)
        for shard in range(ALB_COOKIE_SHARDS):
            response.delete_cookie(f"{ALB_SESSION_COOKIE_PREFIX}-{shard}", secure=True)
        return response
    return redirect(signed_out)


def _continue_at_provider(url: str) -> Response:
    """Signed out here; the provider's session ends at ``url``.

    Not a redirect: the sign-out form's POST may only lead to this site (CSP form-action
    'self', which browsers apply to the redirects a form submission follows), so the page
    moves on by itself (``Refresh``) and offers the link for a browser that does not.
    """
    response = html_page(
        "Signing out",
        "You are signed out here; your identity provider ends its session next.",
        links=[("Continue", url)],
    )
    response.headers["Refresh"] = f"0; url={url}"
    return response


def signed_out() -> Response:
    return html_page(
        "Signed out",
        "You have signed out of Mission Control.",
        links=[("Sign in again", url_for("auth.login"))],
    )


@require_role("admin")
def whoami() -> Response:
    user = current_user()
    assert user is not None  # require_role let us through
    settings = auth_state().settings
    extra = Markup(
        "<p>Mode <code>{}</code>. Role <strong>{}</strong>, read from claim <code>{}</code> "
        "through ROLE_MAP.</p><h2>Claims</h2>"
    ).format(settings.mode, user.role, settings.oidc_roles_claim) + claims_table(user.claims)
    return html_page(
        "Who am I",
        f"Signed in as {user.name or user.label} ({user.label}).",
        extra=extra,
        links=[
            ("Dashboard", "/"),
            ("Audit log", url_for("auth.audit_log")),
            ("Sessions", url_for("auth.admin_sessions")),
        ],
    )


def _sessions_or_none() -> SessionStore:
    sessions = auth_state().sessions
    if sessions is None:
        abort(404)  # only AUTH_MODE=oidc keeps sessions here
    return sessions


@require_role("admin")
def admin_sessions() -> Response:
    """Live sessions, all or one user's (``?user=`` e-mail or subject), each endable."""
    sessions = _sessions_or_none()
    wanted = request.args.get("user", "").strip()
    try:
        found = sessions.sessions()
    except SessionStoreUnavailable as exc:
        log.error("session list failed: %s", exc)
        return session_store_unavailable()
    if wanted:
        found = [
            (key, doc)
            for key, doc in found
            if wanted == doc.get("sub") or wanted.lower() == str(doc.get("email", "")).lower()
        ]
    extra = sessions_table(
        found,
        end_action=url_for("auth.admin_end_session"),
        current_key=cookie_session_key(),
        expires_at=sessions.expires_at,
    )
    subjects = {str(doc.get("sub", "")) for _, doc in found}
    if wanted and len(subjects) == 1:
        extra += Markup(
            "<form method='post' action='{}' class='actions'><input type='hidden' name='sub' "
            "value='{}'><button type='submit'>End all sessions of {}</button></form>"
        ).format(url_for("auth.admin_end_user_sessions"), subjects.pop(), wanted)
    caption = f"{len(found)} live sessions" + (f" of {wanted}" if wanted else "")
    return html_page(
        "Sessions",
        caption,
        extra=extra,
        links=[("Dashboard", "/"), ("Audit log", url_for("auth.audit_log"))],
    )


@require_role("admin")
def admin_end_session() -> Response:
    sessions = _sessions_or_none()
    key = request.form.get("key", "")
    try:
        ended = sessions.end(key) if key else None
    except SessionStoreUnavailable as exc:
        log.error("ending session %s failed: %s", key[:8], exc)
        return session_store_unavailable()
    if ended is not None:
        target = user_of(ended)
        audit_as(current_user(), "session-ended", target=target.label, session=key[:8])
        return redirect(url_for("auth.admin_sessions", user=target.email or target.subject))
    return redirect(url_for("auth.admin_sessions"))


@require_role("admin")
def admin_end_user_sessions() -> Response:
    sessions = _sessions_or_none()
    subject = request.form.get("sub", "")
    try:
        count = sessions.end_all(subject) if subject else 0
    except SessionStoreUnavailable as exc:
        log.error("ending the sessions of %s failed: %s", subject, exc)
        return session_store_unavailable()
    audit_as(current_user(), "sessions-ended", target=subject, sessions=count)
    return redirect(url_for("auth.admin_sessions"))


@require_role("admin")
def audit_log() -> Response:
    state = auth_state()
    event = request.args.get("event", "").strip()
    try:
        limit = min(max(int(request.args.get("limit", "200")), 1), MAX_AUDIT_ROWS)
    except ValueError:
        limit = 200
    try:
        entries = state.audit_log.recent(MAX_AUDIT_ROWS if event else limit)
    except Exception:
        log.exception("audit store read failed")
        return error_page(
            "Audit log unavailable",
            "The audit store cannot be read right now.",
            status=503,
            retry_url=safe_next(requested_path()),
        )
    if event:
        entries = [(key, entry) for key, entry in entries if entry.get("event") == event][:limit]
    caption = f"Newest {len(entries)} entries" + (f" of event {event!r}" if event else "")
    return html_page(
        "Audit log",
        caption,
        extra=audit_table(entries),
        links=[("Dashboard", "/"), ("Who am I", url_for("auth.whoami"))],
    )


def register_views(server: Flask) -> None:
    blueprint = Blueprint("auth", __name__)
    blueprint.add_url_rule("/login", "login", login, methods=["GET"])
    blueprint.add_url_rule("/auth/callback", "callback", callback, methods=["GET"])
    blueprint.add_url_rule("/logout", "logout", logout, methods=["GET", "POST"])  # GET asks
    blueprint.add_url_rule(
        "/logout/everywhere", "logout_everywhere", logout_everywhere, methods=["POST"]
    )
    blueprint.add_url_rule("/signed-out", "signed_out", signed_out, methods=["GET"])
    blueprint.add_url_rule("/auth/whoami", "whoami", whoami, methods=["GET"])
    blueprint.add_url_rule("/admin/audit", "audit_log", audit_log, methods=["GET"])
    blueprint.add_url_rule("/admin/sessions", "admin_sessions", admin_sessions, methods=["GET"])
    blueprint.add_url_rule(
        "/admin/sessions/end", "admin_end_session", admin_end_session, methods=["POST"]
    )
    blueprint.add_url_rule(
        "/admin/sessions/end-user",
        "admin_end_user_sessions",
        admin_end_user_sessions,
        methods=["POST"],
    )
    server.register_blueprint(blueprint)
