"""User files for the runtime's servers (the OPC UA server's writes and methods): one
`user:password` per line, `#` comments, a password stored in clear or as
`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` - the format of the QA app's `--auth-file`, so
one file can serve both. The runtime cannot import defectgate_training; this is its own reader."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from .errors import ConfigError

PBKDF2 = "pbkdf2_sha256"


class UserFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: user file not found; write one 'user:password' line per user")
        self._users: dict[str, str] = {}
        for n, raw in enumerate(self.path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, secret = (part.strip() for part in line.partition(":"))
            if not sep or not user or not secret:  # never echo the line: it may hold a password
                raise ConfigError(f"{self.path} line {n}: expected 'user:password'")
            if secret.startswith(PBKDF2 + "$") and len(secret.split("$")) != 4:
                raise ConfigError(f"{self.path} line {n}: malformed {PBKDF2} hash for user {user!r}")
            if user in self._users:
                raise ConfigError(f"{self.path} line {n}: user {user!r} is listed twice")
            self._users[user] = secret
        if not self._users:
            raise ConfigError(f"{self.path}: no users in it; add 'user:password' lines")

    def __len__(self) -> int:
        return len(self._users)

    def check(self, user: str, password: str) -> bool:
        stored = self._users.get(user)
        if stored is None:
            hmac.compare_digest(password, password)  # the same work for an unknown user
            return False
        if stored.startswith(PBKDF2 + "$"):
            _, iterations, salt, digest = stored.split("$")
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations)).hex()
            return hmac.compare_digest(got, digest)
        return hmac.compare_digest(stored.encode(), password.encode())
