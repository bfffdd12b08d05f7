"""Login for the QA app. Users come from `--auth-file` (one `user:password` per line, `#`
comments) or the env var DEFECTGATE_QA_USERS (`user:password,user2:password2`); there are no
default credentials in code. A password may be stored hashed as
`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (make one with `defectgate qa --hash-password`).

The app refuses to listen on a non-loopback address without users: a review station on the plant
network must not be open to anyone who finds the port."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import AuthError

log = logging.getLogger(__name__)

ENV_USERS = "DEFECTGATE_QA_USERS"
_PBKDF2 = "pbkdf2_sha256"


@dataclass(frozen=True)
class Users:
    entries: dict[str, str]  # user -> password or pbkdf2 string
    source: str

    def check(self, user: str, password: str) -> bool:
        stored = self.entries.get(user)
        if stored is None:
            hmac.compare_digest(password, password)  # same work for unknown users
            return False
        if stored.startswith(_PBKDF2 + "$"):
            _, iters, salt, digest = stored.split("$")
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iters)).hex()
            return hmac.compare_digest(got, digest)
        return hmac.compare_digest(stored.encode(), password.encode())


def hash_password(password: str, iterations: int = 200_000) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations).hex()
    return f"{_PBKDF2}${iterations}${salt.hex()}${digest}"


def parse_users(text: str, source: str, separator: str = "\n") -> dict[str, str]:
    users: dict[str, str] = {}
    for n, raw in enumerate(text.split(separator), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        where = f"{source} line {n}" if separator == "\n" else f"{source} entry {n}"
        if not sep or not user or not password:
            # the line itself is not echoed: it may hold a password
            missing = "the ':'" if not sep else "the user name" if not user else "the password"
            raise AuthError(f"{where}: expected 'user:password' but {missing} is missing")
        if password.startswith(_PBKDF2 + "$") and len(password.split("$")) != 4:
            raise AuthError(f"{where}: malformed {_PBKDF2} hash for user {user!r}")
        if user in users:
            raise AuthError(f"{where}: user {user!r} is listed twice")
        users[user] = password
    return users


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
