"""Self-service local accounts: the rules, without I/O (no database, no network, no clock of their own).

- passwords: :func:`password_problem` (too short, on the common-password list, the username, over bcrypt's 72
  bytes); :func:`email_problem` and :func:`email_domain_allowed` for sign-up addresses;
- lockout: :class:`Failures` and :func:`after_failure` / :func:`locked_for` — after ``allowed`` failed sign-ins
  within ``seconds`` of each other, a key (an account name, or a client address) is locked for ``seconds``;
- TOTP (RFC 6238 over RFC 4226's HOTP: HMAC-SHA1, 30 s steps, 6 digits — what authenticator apps and
  NativeAuthenticator's ``onetimepass`` use, with base32 secrets): :func:`new_totp_secret`, :func:`totp`,
  :func:`totp_step`, :func:`otpauth_uri`.

Callers pass the time (``now``, seconds since the epoch), so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.resources
import re
import secrets
import struct
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlencode

from ..mail import address_problem

#: bcrypt uses at most this many bytes of a password (bcrypt 5 raises on longer ones): longer ones are refused.
MAX_PASSWORD_BYTES = 72
TOTP_STEP = 30  # seconds
TOTP_DIGITS = 6
#: A code is accepted in the step it was made for and one step either side (clock skew between phone and hub).
TOTP_WINDOW = 1


# ---- passwords ---------------------------------------------------------------------------------------------------
def password_too_long(password: str) -> str | None:
    """Why ``password`` cannot be a local password (more than 72 UTF-8 bytes), or None."""
    n = len(password.encode("utf-8"))
    if n > MAX_PASSWORD_BYTES:
        return (f"passwords of local accounts are at most {MAX_PASSWORD_BYTES} bytes (UTF-8); this one is {n} "
                f"bytes: choose a shorter one")
    return None


@lru_cache(maxsize=4)
def common_passwords(path: str = "") -> frozenset[str]:
    """The common-password list: one password a line, compared lowercased (hubfleet's own list, or ``path``)."""
    if path:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = importlib.resources.files("hubfleet.authenticators").joinpath("data", "common-passwords.txt") \
            .read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip()
                     and not line.startswith("#"))


def password_problem(password: str, *, username: str = "", minimum_length: int = 1,
                     common: frozenset[str] = frozenset()) -> str | None:
    """Why ``password`` cannot be chosen, as a sentence for the user, or None."""
    if not password or not password.strip():
        return "The password is empty."
    too_long = password_too_long(password)
    if too_long:
        return too_long[0].upper() + too_long[1:] + "."
    if len(password) < minimum_length:
        return f"The password must be at least {minimum_length} characters long; this one has {len(password)}."
    if username and password.lower() == username.lower():
        return "The password must not be the username."
    if password.lower() in common:
        return "This password is on the list of common passwords that attackers try first: choose another."
    return None


def email_problem(address: str) -> str | None:
    """Why ``address`` is not a usable sign-up address: one plain address (the project's one check,
    :func:`hubfleet.mail.address_problem`) whose domain has a dot (``name@example.org``, not ``name@localhost``)."""
    if not address:
        return "An e-mail address is required."
    if address_problem(address) or "." not in address.rpartition("@")[2]:
        return f"{address[:80]!r} is not an e-mail address like name@example.org."
    return None


def email_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def email_domain_allowed(address: str, domains) -> bool:
    """True when ``address``'s domain is one of ``domains`` or a subdomain of one (``example.org`` admits
    ``lab.example.org``); compared case-insensitively."""
    domain = email_domain(address)
    return any(domain == d.lower().lstrip(".") or domain.endswith("." + d.lower().lstrip(".")) for d in domains)


# ---- lockout -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Failures:
    """The failed sign-ins counted for one key: ``count`` since ``last`` (epoch seconds), locked until ``until``."""

    count: int = 0
    last: float = 0.0
    until: float = 0.0


def locked_for(state: Failures | None, now: float) -> float:
    """Seconds the key stays locked (0: not locked)."""
    return max(0.0, state.until - now) if state else 0.0


def after_failure(state: Failures | None, now: float, *, allowed: int, seconds: float) -> Failures:
    """The state after one more failed sign-in at ``now``. Failures more than ``seconds`` apart start the count
    again; the ``allowed``-th failure locks the key for ``seconds`` (and the count starts again after it).
    A failure while locked does not extend the lock (attempts are refused before the password is checked)."""
    state = state or Failures()
    if locked_for(state, now):
        return state
    count = state.count + 1 if now - state.last <= seconds else 1
    if allowed and count >= allowed:
        return Failures(0, now, now + seconds)
    return Failures(count, now, 0.0)


def wait_text(seconds: float) -> str:
    """``250`` -> ``"4 min 10 s"``; at least one second."""
    s = max(1, int(seconds + 0.999))
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    parts = [f"{h} h" if h else "", f"{m} min" if m else "", f"{s} s" if s else ""]
    return " ".join(p for p in parts if p)


def lockout_message(seconds: float) -> str:
    return f"Too many failed sign-ins: try again in {wait_text(seconds)}."


# ---- TOTP --------------------------------------------------------------------------------------------------------
def new_totp_secret() -> str:
    """A new random base32 secret (160 bits, RFC 4226's recommended length), unpadded."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    s = re.sub(r"[\s-]", "", secret).upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def valid_secret(secret: str) -> bool:
    try:
        return len(_key(secret)) >= 10
    except (ValueError, TypeError):
        return False


def hotp(secret: str, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226: HMAC-SHA1 of the 8-byte counter, dynamically truncated to ``digits`` decimal digits."""
    mac = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10 ** digits).zfill(digits)


def totp(secret: str, now: float, step: int = TOTP_STEP) -> str:
    """RFC 6238: the code for the step holding ``now``."""
    return hotp(secret, int(now // step))


def totp_step(secret: str, code: str, now: float, *, after: int = -1, window: int = TOTP_WINDOW) -> int | None:
    """The time step ``code`` belongs to (within ``window`` steps of ``now``), or None. Steps up to ``after``
    (the last one used) are refused: a code is good for one sign-in only."""
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(rf"\d{{{TOTP_DIGITS}}}", code):
        return None
    current = int(now // TOTP_STEP)
    for step in range(current - window, current + window + 1):
        if step > after and hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read (from a QR code or typed in)."""
    label = quote(f"{issuer}:{account}", safe="")
    return f"otpauth://totp/{label}?" + urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                                                   "digits": TOTP_DIGITS, "period": TOTP_STEP})
