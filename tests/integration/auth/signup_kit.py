"""Helpers for the self-service account tests: an aiosmtpd mailbox, a NativeAuthenticator-shaped ``users_info``
table (built here from its documented layout), the hub configuration, and form posts through the real pages."""

from __future__ import annotations

import re
import textwrap
import threading
import time
from email import message_from_bytes, policy
from html import unescape
from pathlib import Path

import bcrypt
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import Boolean, Column, Integer, LargeBinary, MetaData, String, Table, create_engine

from hubfleet.authenticators.accounts import totp
from hubfleet.authenticators.local import hash_password, write_users_file
from tests.procs import free_port

from . import servers as S

_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')
NATIVE_SECRET = "JBSWY3DPEHPK3PXP"  # 16 base32 characters, as NativeAuthenticator's onetimepass secrets


class Mailbox:
    def __init__(self):
        self.messages: list = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.cond:
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
            self.cond.notify_all()
        return "250 OK"

    def wait(self, to: str, subject_part: str, timeout: float = 20):
        """The first mail to ``to`` whose subject holds ``subject_part``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for rcpt, msg in self.messages:
                    if to in rcpt and subject_part in msg["Subject"]:
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {to} about {subject_part!r} within {timeout}s; got "
                                         f"{[(r, m['Subject']) for r, m in self.messages]}")
                self.cond.wait(left)


def start_smtp() -> tuple[Controller, Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, box


def native_users_info(db_url: str) -> None:
    """A NativeAuthenticator site's hub database: JupyterHub's own tables (made by JupyterHub, as a running hub
    leaves them) and NativeAuthenticator's ``users_info`` (its documented columns) with three accounts: approved
    with 2FA, approved, not yet approved."""
    from jupyterhub import orm

    orm.new_session_factory(db_url)().close()
    md = MetaData()
    users_info = Table("users_info", md, Column("id", Integer, primary_key=True, autoincrement=True),
                       Column("username", String(128), nullable=False), Column("password", LargeBinary, nullable=False),
                       Column("is_authorized", Boolean, default=False), Column("login_email_sent", Boolean, default=False),
                       Column("email", String(128)), Column("has_2fa", Boolean, default=False),
                       Column("otp_secret", String(16)))
    engine = create_engine(db_url)
    md.create_all(engine)

    def pw(p: str) -> bytes:
        return bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4))

    with engine.begin() as conn:
        conn.execute(users_info.insert(), [
            {"username": "nat-alice", "password": pw("nat-alice-pw"), "is_authorized": True, "email": "na@x.example",
             "has_2fa": True, "otp_secret": NATIVE_SECRET},
            {"username": "nat-bob", "password": pw("nat-bob-pw"), "is_authorized": True, "email": None, "has_2fa": False,
             "otp_secret": "AAAAAAAAAAAAAAAA"},
            {"username": "nat-carol", "password": pw("nat-carol-pw"), "is_authorized": False, "email": None, "has_2fa": False,
             "otp_secret": "AAAAAAAAAAAAAAAA"},
        ])
    engine.dispose()


def users_file(path: Path) -> Path:
    write_users_file(path, {"users": {
        "root": {"password_hash": hash_password("root-password-1", rounds=4), "groups": [], "admin": True},
        "filer": {"password_hash": hash_password("filer-password-1", rounds=4), "groups": []},
        "guard": {"password_hash": hash_password("guard-password-1", rounds=4), "groups": ["secure"]},
        "locky": {"password_hash": hash_password("locky-password-1", rounds=4), "groups": []},
    }})
    return path


def hub_config(users: Path, smtp_port: int, db_url: str | None, extra: str = "") -> str:
    return textwrap.dedent(f"""
        c.JupyterHub.authenticator_class = "hubfleet-local"
        c.HubfleetLocalAuthenticator.allow_all = True
        c.HubfleetLocalAuthenticator.users_file = {str(users)!r}
        c.HubfleetLocalAuthenticator.bcrypt_rounds = 4
        c.HubfleetLocalAuthenticator.enable_signup = True
        c.HubfleetLocalAuthenticator.ask_email_on_signup = True
        c.HubfleetLocalAuthenticator.allowed_email_domains = {{"uni.example"}}
        c.HubfleetLocalAuthenticator.minimum_password_length = 10
        c.HubfleetLocalAuthenticator.check_common_password = True
        c.HubfleetLocalAuthenticator.allowed_failed_logins = 3
        c.HubfleetLocalAuthenticator.allowed_failed_logins_per_address = 6
        c.HubfleetLocalAuthenticator.seconds_before_next_try = 300
        c.HubfleetLocalAuthenticator.allow_2fa = True
        c.HubfleetLocalAuthenticator.totp_required_groups = {{"secure"}}
        c.HubfleetLocalAuthenticator.smtp_host = "127.0.0.1"
        c.JupyterHub.public_url = c.JupyterHub.bind_url  # the links in the mails come from it
        c.HubfleetLocalAuthenticator.smtp_port = {smtp_port}
        c.HubfleetLocalAuthenticator.smtp_sender = "hub@hub.example"
        c.HubfleetLocalAuthenticator.smtp_admin_addresses = ["admins@hub.example"]
        """) + (f"c.JupyterHub.db_url = {db_url!r}\n" if db_url else "") + textwrap.dedent(extra)


def text_of(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</p>', html, re.S)
    return unescape(m.group(1).strip()) if m else ""


def post_form(s: requests.Session, url: str, data: dict, *, ip: str = "", host: str = "",
              allow_redirects: bool = False):
    """GET ``url`` (xsrf cookie and field), then POST ``data`` to it (with ``host``: in that Host header)."""
    headers = {"X-Real-Ip": ip} if ip else {}  # the client address the hub sees (tornado's xheaders)
    if host:
        headers["Host"] = host
    r = s.get(url, headers=headers, timeout=30)
    m = _XSRF.search(r.text)
    xsrf = m.group(1) if m else s.cookies.get("_xsrf", "")
    return s.post(url, data={**data, "_xsrf": xsrf}, headers=headers, allow_redirects=allow_redirects, timeout=30)


def login(hub, name: str, password: str, *, otp: str = "", ip: str = "10.9.9.9",
          session: requests.Session | None = None) -> S.LoginResult:
    s = session or requests.Session()
    t0 = time.monotonic()
    r = post_form(s, f"{hub.url}/hub/login", {"username": name, "password": password, "otp": otp}, ip=ip)
    return S.LoginResult(r.status_code, r.headers.get("Location", ""), r.text, s, time.monotonic() - t0)


def code(secret: str, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows now (``steps_ahead=1``: the next 30-second step's, which the hub
    accepts too: a code already used once is refused)."""
    return totp(secret, time.time() + 30 * steps_ahead)
