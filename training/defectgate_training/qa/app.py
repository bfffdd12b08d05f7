"""`defectgate qa`: start the QA review and labeling web app on a station archive.

    defectgate qa --archive runs/demo/station/archive --bundle runs/demo/bundle --label-dir datasets

Binds 127.0.0.1 by default. `--host 0.0.0.0` (the plant network) needs a login: `--auth-file`
or DEFECTGATE_QA_USERS; the app refuses to start without one."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from pathlib import Path

from .auth import ENV_USERS, Users, check_bind, hash_password, load_users
from .errors import QAError
from .quality import Shifts
from .service import QAConfig, QAService

log = logging.getLogger(__name__)

# No telemetry, no update checks, no hub look-ups: the app runs on an isolated plant network.
for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("MPLBACKEND", "Agg")):
    os.environ.setdefault(_key, _value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defectgate qa", description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", default="runs/demo/station/archive",
                   help="station archive folder (parts.sqlite + images/); default: the 'make demo' archive")
    p.add_argument("--bundle", default=None, help="model bundle folder for pre-labels and the export's class order")
    p.add_argument("--reviews", default=None, help="review database (default: <archive>/reviews.sqlite)")
    p.add_argument("--exports", default=None, help="where dataset increments go (default: <archive>/../qa-exports)")
    p.add_argument("--label-dir", action="append", default=[],
                   help="folder whose images may be labelled from the browser (repeatable); nothing outside")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need a login)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth-file", default=None, help=f"'user:password' lines (else env {ENV_USERS})")
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (logins on a network)")
    p.add_argument("--ssl-keyfile", default=None, help="the certificate's private key")
    p.add_argument("--reviewer", default=None, help="reviewer name without a login (default: the OS user)")
    p.add_argument("--shift-starts", default="6,14,22", help="shift start hours, e.g. 6,14,22")
    p.add_argument("--timezone", default="UTC", help="time zone of the shifts (IANA name, e.g. Europe/Berlin)")
    p.add_argument("--suggest-conf", type=float, default=None,
                   help="lower every class threshold of model suggestions to this (default: the bundle's per-class "
                        "thresholds, what the station rejects at)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="share of exported images (chosen by image hash) put in the increment's val split")
    p.add_argument("--check", action="store_true", help="open everything, print a summary and exit (no server)")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password from stdin and print a hashed form for the auth file")
    return p


def config_from_args(args: argparse.Namespace) -> QAConfig:
    try:
        starts = tuple(int(h) for h in args.shift_starts.split(",") if h.strip())
    except ValueError:
        raise QAError(f"--shift-starts {args.shift_starts!r}: give hours 0..23 separated by commas, e.g. 6,14,22") from None
    if args.suggest_conf is not None and not 0.0 < args.suggest_conf <= 1.0:
        raise QAError(f"--suggest-conf {args.suggest_conf}: must be in (0, 1]")
    if not 0.0 <= args.val_fraction < 1.0:
        raise QAError(f"--val-fraction {args.val_fraction}: must be in [0, 1)")
    for d in args.label_dir:
        if not Path(d).is_dir():
            raise QAError(f"--label-dir {d}: folder not found")
    return QAConfig(
        archive=Path(args.archive), bundle=Path(args.bundle) if args.bundle else None,
        reviews=Path(args.reviews) if args.reviews else None, exports=Path(args.exports) if args.exports else None,
        label_dirs=[Path(d) for d in args.label_dir], shifts=Shifts(starts, args.timezone),
        suggest_conf=args.suggest_conf, val_fraction=args.val_fraction)


def launch(svc: QAService, host: str = "127.0.0.1", port: int = 7860, users: Users | None = None,
           reviewer: str = "", block: bool = True, ssl: tuple[str, str] | None = None):
    """Start the server; returns (blocks, url). Refuses a non-loopback host without users."""
    check_bind(host, users)
    from .ui import KEYS_JS, build_ui  # gradio is imported only when a server is really started

    demo = build_ui(svc, reviewer_default=reviewer, login=users is not None)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
        auth=users.check if users else None,
        auth_message="defectgate QA: log in with your reviewer account" if users else None,
        ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, show_error=False,
        footer_links=["settings"], head=KEYS_JS, max_file_size="20mb",
        ssl_certfile=ssl[0] if ssl else None, ssl_keyfile=ssl[1] if ssl else None,
        # ssl_verify only governs gradio's start-up request to this very server; plant certificates
        # are often self-signed, and that request must not refuse them
        ssl_verify=False)
    log.info("QA app on %s (archive %s, login %s)", url, svc.archive.root, users.source if users else "off: loopback only")
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.hash_password:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise QAError("--hash-password: no password on stdin")
        print(hash_password(password))
        return 0
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise QAError("--ssl-certfile and --ssl-keyfile go together; pass both or neither")
    for f in (args.ssl_certfile, args.ssl_keyfile):
        if f and not Path(f).is_file():
            raise QAError(f"{f}: TLS file not found")
    users = load_users(args.auth_file)
    check_bind(args.host, users)  # before anything slow: a refused start should be instant
    svc = QAService(config_from_args(args))
    reviewer = args.reviewer if args.reviewer is not None else getpass.getuser()
    if args.check:
        empty = svc.archive.empty_message()
        print(f"archive {svc.archive.root}: {svc.archive.count()} parts; reviews {svc.store.path}: "
              f"{len(svc.store.latest())} decisions; classes {svc.classes}; exports -> {svc.exports}"
              + (f"\n{empty}" if empty else ""))
        return 0
    scheme = "https" if args.ssl_certfile else "http"
    print(f"defectgate qa: serving {scheme}://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # systemd/docker stop: close the server cleanly
    ssl = (args.ssl_certfile, args.ssl_keyfile) if args.ssl_certfile else None
    launch(svc, args.host, args.port, users, reviewer, block=True, ssl=ssl)
    svc.store.close()
    print("defectgate qa: stopped", flush=True)
    return 0


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # gradio's block_thread closes the server on it
