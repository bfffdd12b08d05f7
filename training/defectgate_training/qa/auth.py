"""Login for the QA app. Users come from `--auth-file` (one `user:password` per line, `#`
comments) or the env var DEFECTGATE_QA_USERS (`user:password,user2:password2`); there are no
default credentials in code. A password may be stored hashed as
`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (make one with `defectgate qa --hash-password`).
Parsing and the password check are the runtime's (defectgate.users), the same as the OPC UA server's.

The app refuses to listen on a non-loopback address without users: a review station on the plant
network must not be open to anyone who finds the port."""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from defectgate import users as runtime_users
from defectgate.errors import ConfigError
from defectgate.users import hash_password  # noqa: F401  (the QA app's --hash-password)

from .errors import AuthError

log = logging.getLogger(__name__)

ENV_USERS = "DEFECTGATE_QA_USERS"


@dataclass(frozen=True)
class Users:
    entries: dict[str, str]  # user -> password or pbkdf2 string
    source: str

    def check(self, user: str, password: str) -> bool:
        return runtime_users.check_password(self.entries.get(user), password)


def parse_users(text: str, source: str, separator: str = "\n") -> dict[str, str]:
    try:
        return runtime_users.parse_users(text, source, separator)
    except ConfigError as exc:  # the QA app's error type (its CLI and UI show it the same way)
        raise AuthError(str(exc)) from None


def load_users(auth_file: str | Path | None, environ: dict[str, str] | None = None) -> Users | None:
    """Users from the file if given, else from the env var, else None (no login)."""
    env = os.environ if environ is None else environ
    if auth_file:
        path = Path(auth_file)
        if not path.is_file():
            raise AuthError(f"--auth-file {path}: file not found; create it with one 'user:password' per line")
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; chmod 600 it (or store pbkdf2 hashes)", path)
        users = parse_users(path.read_text(), str(path))
        if not users:
            raise AuthError(f"--auth-file {path}: no users in it; add 'user:password' lines")
        return Users(users, str(path))
    if env.get(ENV_USERS, "").strip():
        return Users(parse_users(env[ENV_USERS], ENV_USERS, separator=","), ENV_USERS)
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as exposed


def check_bind(host: str, users: Users | None) -> None:
    if users is None and not is_loopback(host):
        raise AuthError(
            f"--host {host} exposes the QA app beyond this machine, so a login is required: pass --auth-file "
            f"FILE ('user:password' lines) or set {ENV_USERS}='user:password,...'; or use --host 127.0.0.1")
