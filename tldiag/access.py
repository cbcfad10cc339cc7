"""Who may do what on a shared dashboard: roles from a small access file, and when the server may be shared.

Roles (:data:`ROLES`), each with everything the one before it may do:

``viewer``  read results, open permalinks, download records and reports
``runner``  also compute embeddings and analyses, and launch jobs (fine-tuning, data efficiency)
``admin``   also cancel anyone's job and change the verdict rules

The access file (TOML; ``TLDIAG_ACCESS`` names it, default ``$TLDIAG_HOME/access.toml``)::

    default_role = "viewer"          # anyone who signed in and is not listed (omit it: "viewer")

    [roles]
    "lead@example.com" = "admin"     # one address
    "@example.com" = "runner"        # a whole domain

An address listed by itself wins over its domain; matching ignores case. Without an access file every signed-in
user gets the default role, ``viewer``.

:func:`serving_mode` decides whether the server may start at all: on a loopback address it is a single-user tool
(the default of ``make run``); on any other address it needs sign-in (Streamlit's ``[auth]`` in
``.streamlit/secrets.toml``), unless the operator opts in to an open server with ``TLDIAG_ALLOW_OPEN_SERVER=1``,
and then every page says so.
"""
from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from . import _config
from .errors import TldiagError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROLES = ("viewer", "runner", "admin")
ACTIONS: dict[str, str] = {
    "view": "viewer",         # pages, permalinks, images
    "download": "viewer",     # records, reports, CSV and HTML exports
    "compute": "runner",      # embeddings and in-process analyses
    "launch": "runner",       # fine-tuning and data-efficiency jobs
    "cancel_own": "runner",   # cancel a job one launched
    "cancel_any": "admin",    # cancel anyone's job
    "change_rules": "admin",  # the verdict's thresholds
}
"""Action -> the least role that may do it."""
OPEN_SERVER_ENV = "TLDIAG_ALLOW_OPEN_SERVER"
SINGLE_USER = "single-user"
SIGNED_IN = "signed-in"
OPEN = "open"


class AccessDenied(TldiagError):
    """A user asked for something their role does not allow."""


def _read_toml(path: Path, what: str) -> dict:
    """A TOML file (UTF-8), or a clear error naming ``what`` and the path."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TldiagError(f"{what} {str(path)!r} cannot be read: {exc}. Fix it (TOML) or remove it.") from None


def _check_role(role: object, where: str) -> str:
    if role not in ROLES:
        raise TldiagError(f"{where}: role {role!r} is not a role; use one of {', '.join(ROLES)}.")
    return str(role)


@dataclass(frozen=True)
class AccessPolicy:
    """Roles by e-mail address or ``@domain``, and the role of everyone else who signed in.

    Attributes:
        roles: Lower-cased address or ``@domain`` -> role.
        default_role: The role of a signed-in user the file does not list.
        origin: Where it was read from ("defaults" or a path), for the audit log and the pages.
    """

    roles: Mapping[str, str] = field(default_factory=dict)
    default_role: str = "viewer"
    origin: str = "defaults"

    @classmethod
    def from_dict(cls, d: Mapping[str, object], origin: str = "defaults") -> "AccessPolicy":
        unknown = sorted(set(d) - {"default_role", "roles"})
        if unknown:
            raise TldiagError(f"Access file ({origin}): unknown keys {unknown}; it holds default_role and a [roles] "
                              "table of addresses or @domains, e.g. \"@example.com\" = \"runner\".")
        default = _check_role(d.get("default_role", "viewer"), f"Access file ({origin}), default_role")
        table = d.get("roles", {})
        if not isinstance(table, Mapping):
            raise TldiagError(f"Access file ({origin}): roles must be a table, e.g. [roles] then "
                              "\"lead@example.com\" = \"admin\".")
        roles = {}
        for who, role in table.items():
            key = str(who).strip().lower()
            if not key or ("@" not in key):
                raise TldiagError(f"Access file ({origin}): {who!r} is neither an e-mail address nor an @domain; "
                                  "write \"name@example.com\" or \"@example.com\".")
            roles[key] = _check_role(role, f"Access file ({origin}), {who}")
        return cls(roles=roles, default_role=default, origin=origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> "AccessPolicy":
        """The policy of ``path``, or of ``TLDIAG_ACCESS``, or of ``$TLDIAG_HOME/access.toml`` when it exists;
        else everyone signed in is a viewer. A file that was named but is missing or unreadable is an error."""
        named = path or os.environ.get("TLDIAG_ACCESS")
        file = Path(named) if named else _config.home() / "access.toml"
        if not file.is_file():
            if named:
                raise TldiagError(f"Access file {str(file)!r} does not exist; create it (see tldiag.access) or "
                                  "unset TLDIAG_ACCESS.")
            return cls()
        return cls.from_dict(_read_toml(file, "Access file"), origin=str(file))

    def role_of(self, email: str | None) -> str:
        """The role of a signed-in user: their address, else their domain, else the default."""
        if not email:
            return self.default_role
        address = email.strip().lower()
        if address in self.roles:
            return self.roles[address]
        domain = "@" + address.rsplit("@", 1)[-1] if "@" in address else None
        return self.roles.get(domain, self.default_role) if domain else self.default_role


def can(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (a key of :data:`ACTIONS`)."""
    if action not in ACTIONS:
        raise TldiagError(f"Unknown action {action!r}; the actions are {', '.join(ACTIONS)}.")
    return ROLES.index(_check_role(role, "can()")) >= ROLES.index(ACTIONS[action])


def require(user: str | None, role: str, action: str) -> None:
    """Refuse ``action`` unless ``role`` allows it, naming the user, the action and the role it needs."""
    if not can(role, action):
        raise AccessDenied(f"{user or 'This user'} is a {role}; {action.replace('_', ' ')} needs the "
                           f"{ACTIONS[action]} role. Ask an admin to change the access file.")


def is_loopback(address: str) -> bool:
    """Whether a server address only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class ServingMode:
    """How the dashboard serves: ``single-user`` (loopback, no sign-in), ``signed-in`` (``[auth]`` configured:
    nothing renders before sign-in) or ``open`` (another address without sign-in, opted in: every page warns)."""

    mode: str
    address: str
    banner: str = ""


def serving_mode(address: str, *, auth_configured: bool, environ: Mapping[str, str] | None = None) -> ServingMode:
    """Whether and how the server may serve on ``address``; refuses an address other machines can reach
    without sign-in, unless :data:`OPEN_SERVER_ENV` is ``1``."""
    environ = os.environ if environ is None else environ
    if auth_configured:
        return ServingMode(SIGNED_IN, address)
    if is_loopback(address):
        return ServingMode(SINGLE_USER, address)
    if environ.get(OPEN_SERVER_ENV, "").strip() == "1":
        return ServingMode(OPEN, address, f"This dashboard serves {address} without sign-in ({OPEN_SERVER_ENV}=1): "
                                          "anyone who can reach it can launch and cancel jobs and read every result.")
    raise TldiagError(f"Refusing to serve on {address!r} without sign-in: anyone on the network could launch jobs, "
                      "cancel them and read every image and record. Configure [auth] in .streamlit/secrets.toml "
                      "(README, 'Sharing the dashboard'), or serve on 127.0.0.1, or set "
                      f"{OPEN_SERVER_ENV}=1 to serve it open anyway (every page will say so).")


def main(argv: list[str] | None = None) -> int:
    """``python -m tldiag.access ADDRESS [SECRETS]``: exit 2 with the reason when the dashboard may not serve
    there (``make run`` checks before it starts Streamlit)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m tldiag.access ADDRESS [SECRETS_TOML]", file=sys.stderr)
        return 2
    secrets = Path(args[1] if len(args) > 1 else ".streamlit/secrets.toml")
    try:
        configured = auth_configured(secrets)
        mode = serving_mode(args[0], auth_configured=configured)
    except TldiagError as exc:
        print(f"tldiag: {exc}", file=sys.stderr)
        return 2
    if mode.banner:
        print(f"tldiag: warning: {mode.banner}", file=sys.stderr)
    return 0


def auth_configured(secrets: str | os.PathLike[str] | Mapping[str, object]) -> bool:
    """Whether Streamlit's secrets (a ``secrets.toml`` path, or the secrets as a mapping) configure sign-in: an
    ``[auth]`` table with a ``redirect_uri`` and a ``cookie_secret`` (what ``st.login`` needs), and a provider
    (``client_id`` and ``server_metadata_url`` at the top or in a provider sub-table). A half-written ``[auth]`` is
    an error naming what is missing."""
    if isinstance(secrets, Mapping):
        data, path = secrets, "the secrets"
    else:
        path = Path(secrets)
        if not path.is_file():
            return False
        data = _read_toml(path, "Secrets file")
    auth = data.get("auth")
    if auth is None:
        return False
    if not isinstance(auth, Mapping):
        raise TldiagError(f"auth in {path} must be a table ([auth]); see the README, 'Sharing the dashboard'.")
    missing = [k for k in ("redirect_uri", "cookie_secret") if not auth.get(k)]
    providers = [auth] + [v for v in auth.values() if isinstance(v, Mapping)]
    if not any(p.get("client_id") and p.get("server_metadata_url") for p in providers):
        missing.append("client_id and server_metadata_url (at the top of [auth] or in [auth.<provider>])")
    if missing:
        raise TldiagError(f"[auth] in {path} is incomplete: missing {', '.join(missing)}. See the README, "
                          "'Sharing the dashboard'.")
    return True


__all__ = ["ACTIONS", "AccessDenied", "AccessPolicy", "OPEN", "OPEN_SERVER_ENV", "ROLES", "SIGNED_IN", "SINGLE_USER",
           "ServingMode", "auth_configured", "can", "is_loopback", "require", "serving_mode"]


if __name__ == "__main__":
    raise SystemExit(main())
