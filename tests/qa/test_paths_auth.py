"""Safety: browser paths stay inside configured folders; logins come only from a file or env var
and are required off loopback."""

from __future__ import annotations

import os

import pytest

from defectgate.cli import main as cli_main
from defectgate_training.qa.auth import (ENV_USERS, check_bind, hash_password, is_loopback, load_users,
                                         parse_users)
from defectgate_training.qa.errors import AuthError, PathEscapeError
from defectgate_training.qa.paths import confine


def test_confine_accepts_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "labels"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    assert confine("sub", [root]) == (root / "sub").resolve()
    assert confine(str(root / "sub"), [root]) == (root / "sub").resolve()
    for bad in ("../secret", "sub/../../secret", str(tmp_path / "secret"), "/etc/passwd", "sub/\x00x"):
        with pytest.raises(PathEscapeError):
            confine(bad, [root])
    os.symlink(tmp_path / "secret", root / "link")  # a symlink that leaves the folder is an escape too
    with pytest.raises(PathEscapeError, match="outside the allowed folders"):
        confine("link", [root])


def test_confine_without_roots_says_how_to_configure(tmp_path):
    with pytest.raises(PathEscapeError, match="--label-dir"):
        confine("x", [])


def test_users_from_file_env_and_hash(tmp_path):
    f = tmp_path / "users"
    f.write_text("# reviewers\nalice:s3cret\nbob:" + hash_password("hunter2", iterations=1000) + "\n")
    users = load_users(f, environ={})
    assert users.check("alice", "s3cret") and not users.check("alice", "wrong")
    assert users.check("bob", "hunter2") and not users.check("bob", "hunter3")
    assert not users.check("mallory", "s3cret")
    env_users = load_users(None, environ={ENV_USERS: "carol:pw1, dave:pw2"})
    assert env_users.check("carol", "pw1") and env_users.check("dave", "pw2")
    assert load_users(None, environ={}) is None  # no defaults in code


@pytest.mark.parametrize("text,match", [("alice=pw", "line 1: .*the ':' is missing"), ("a:1\na:2", "listed twice"),
                                         ("# c\n:pw", "line 2: .*user name is missing")])
def test_malformed_users_name_the_line_but_not_the_password(text, match):
    with pytest.raises(AuthError, match=match) as err:
        parse_users(text, "users.txt")
    assert "pw" not in str(err.value)


def test_missing_auth_file_is_an_error(tmp_path):
    with pytest.raises(AuthError, match="file not found"):
        load_users(tmp_path / "nope", environ={})


def test_non_loopback_needs_login():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("qa-station")
    check_bind("127.0.0.1", None)
    with pytest.raises(AuthError, match="login is required"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", load_users(None, environ={ENV_USERS: "a:b"}))


def test_cli_refuses_open_bind_without_credentials(archive_dir, monkeypatch, capsys):
    monkeypatch.delenv(ENV_USERS, raising=False)
    rc = cli_main(["qa", "--archive", str(archive_dir), "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert rc == 2 and "login is required" in err and "Traceback" not in err


def test_tls_files_must_come_in_pairs(archive_dir, capsys):
    rc = cli_main(["qa", "--archive", str(archive_dir), "--ssl-certfile", "cert.pem", "--check"])
    assert rc == 2 and "go together" in capsys.readouterr().err
