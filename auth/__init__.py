"""Who is asking: sign-in modes, roles, audit. Imports neither dash nor data_access.

The interface the dashboard uses:

``init_auth(server, settings, records)``
    Call once from ``create_app`` with ``AuthSettings.from_env(env)`` and the backend's
    record store (``Stores.records``). Configures the session cookie (HttpOnly,
    SameSite=Lax, Secure over https and in production; it names a server-side session in
    the record store, see ``auth.session``), ProxyFix from ``PROXY_FIX_*``, the routes
    ``/login``, ``/auth/callback``, ``/logout``, ``/logout/everywhere``, ``/signed-out``,
    ``/auth/whoami``, ``/admin/audit`` and ``/admin/sessions`` (admin), and a guard in front
    of every other route (see ``auth.guard`` for the public allowlist and why).
``current_user() -> User | None``
    The signed-in user of the request (``user.role``, ``user.can("operator")``).
``require_role(role)``
    Decorator for Flask views: 401/redirect without a user, 403 (and an audit entry)
    below ``role``. CSV export needs ``operator``.
``protect_dash_outputs(server, {"customer-": "operator", ...})``
    Dash callbacks writing to a component whose id starts with a prefix need that role;
    a crafted ``/_dash-update-component`` request from a lower role gets a 403 JSON answer.
``audit(event, **details)``
    Append an entry (who, when, event, details) to the audit log, e.g.
    ``audit("export", view="revenue", filters={...}, rows=120)`` or
    ``audit("alert-ack", alert=alert_id)``. Sign-ins, sign-outs and refusals are logged here.

Settings and their defaults: ``auth.settings`` (module docstring).
"""

from auth.guard import audit, current_user, init_auth, protect_dash_outputs, require_role
from auth.roles import ROLES, User
from auth.settings import AuthSettings

__all__ = [
    "ROLES",
    "AuthSettings",
    "User",
    "audit",
    "current_user",
    "init_auth",
    "protect_dash_outputs",
    "require_role",
]
