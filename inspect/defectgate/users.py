"""User files for the runtime's servers (the OPC UA server's writes and methods) and the QA app's
logins: one `user:password` per line, `#` comments, a password stored in clear or as
`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (`hash_password`; `defectgate qa --hash-password`).
The one reader and the one password check of the project: the QA app (defectgate_training.qa.auth)
uses these too, so one file can serve both."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from .errors import ConfigError

PBKDF2 = "pbkdf2_sha256"


def hash_password(password: str, iterations: int = 200_000) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations).hex()
    return f"{PBKDF2}${iterations}${salt.hex()}${digest}"


def check_password(stored: str | None, password: str) -> bool:
    """`password` against a stored secret (clear or pbkdf2), in constant time; None: an unknown user."""
    if stored is None:
        hmac.compare_digest(password, password)  # the same work for an unknown user
        return False
    if stored.startswith(PBKDF2 + "$"):
        _, iterations, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations)).hex()
        return hmac.compare_digest(got, digest)
    return hmac.compare_digest(stored.encode(), password.encode())


def parse_users(text: str, source: str, separator: str = "\n") -> dict[str, str]:
    """user -> stored secret. Errors name the line (or entry) and what is missing, never the line itself:
    it may hold a password."""
    users: dict[str, str] = {}
    for n, raw in enumerate(text.split(separator), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, secret = (part.strip() for part in line.partition(":"))
        where = f"{source} line {n}" if separator == "\n" else f"{source} entry {n}"
        if not sep or not user or not secret:
            missing = "the ':'" if not sep else "the user name" if not user else "the password"
            raise ConfigError(f"{where}: expected 'user:password' but {missing} is missing")
        if secret.startswith(PBKDF2 + "$") and len(secret.split("$")) != 4:
            raise ConfigError(f"{where}: malformed {PBKDF2} hash for user {user!r}")
        if user in users:
            raise ConfigError(f"{where}: user {user!r} is listed twice")
        users[user] = secret
    return users


class UserFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: user file not found; write one 'user:password' line per user")
        self._users = parse_users(self.path.read_text(), str(self.path))
        if not self._users:
            raise ConfigError(f"{self.path}: no users in it; add 'user:password' lines")

    def __len__(self) -> int:
        return len(self._users)

    def check(self, user: str, password: str) -> bool:
        return check_password(self._users.get(user), password)
