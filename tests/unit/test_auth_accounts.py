"""The rules of the self-service local accounts (accounts.py): TOTP against RFC 6238's test vectors, the lockout
arithmetic, the password and e-mail rules."""

from __future__ import annotations

import base64

import pytest

from hubfleet.authenticators import accounts as A

# RFC 6238 appendix B, SHA-1: the 20-byte ASCII key "12345678901234567890"; codes are the last 6 of the 8 digits
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
               (2000000000, "69279037"), (20000000000, "65353130")]


@pytest.mark.parametrize("t,code", RFC_VECTORS)
def test_totp_matches_rfc_6238(t, code):
    assert A.totp(RFC_SECRET, t) == code[-6:]
    assert A.totp_step(RFC_SECRET, code[-6:], t) == t // 30


def test_totp_window_and_replay():
    secret = A.new_totp_secret()
    now = 1_700_000_000.0
    prev, cur, nxt, far = (A.totp(secret, now + d) for d in (-30, 0, 30, 90))
    step = int(now // 30)
    assert A.totp_step(secret, cur, now) == step
    assert A.totp_step(secret, prev, now) == step - 1  # a phone a little behind
    assert A.totp_step(secret, nxt, now) == step + 1
    assert A.totp_step(secret, far, now) is None
    assert A.totp_step(secret, cur, now, after=step) is None, "a code used once must not work again"
    assert A.totp_step(secret, "12 34", now) is None and A.totp_step(secret, "", now) is None


def test_nativeauthenticator_secrets_are_accepted():
    """NativeAuthenticator (onetimepass) stores 16-character base32 secrets (10 random bytes)."""
    secret = base64.b32encode(b"\x01" * 10).decode()
    assert len(secret) == 16 and A.valid_secret(secret)
    assert A.totp_step(secret, A.totp(secret, 1e9), 1e9) is not None
    assert not A.valid_secret("not base32!")


def test_otpauth_uri():
    uri = A.otpauth_uri("JBSWY3DPEHPK3PXP", "alice", "Hub & Co")
    assert uri.startswith("otpauth://totp/Hub%20%26%20Co%3Aalice?secret=JBSWY3DPEHPK3PXP&issuer=Hub+%26+Co")


def test_lockout_after_allowed_failures_for_the_configured_time():
    allowed, seconds, t = 3, 600, 1000.0
    s = None
    for i in range(allowed - 1):
        s = A.after_failure(s, t + i, allowed=allowed, seconds=seconds)
        assert A.locked_for(s, t + i) == 0
    s = A.after_failure(s, t + 2, allowed=allowed, seconds=seconds)
    assert A.locked_for(s, t + 2) == 600
    assert A.locked_for(s, t + 2 + 590) == 10
    assert A.after_failure(s, t + 300, allowed=allowed, seconds=seconds) == s, "a failure while locked must not extend the lock"
    assert A.locked_for(s, t + 2 + 600) == 0
    s = A.after_failure(s, t + 700, allowed=allowed, seconds=seconds)
    assert (s.count, A.locked_for(s, t + 700)) == (1, 0), "after the lock the count starts again"


def test_failures_far_apart_do_not_add_up():
    s = A.after_failure(None, 0, allowed=2, seconds=60)
    s = A.after_failure(s, 61, allowed=2, seconds=60)
    assert s.count == 1 and A.locked_for(s, 61) == 0


def test_lockout_message_says_the_time_left():
    assert A.lockout_message(250) == "Too many failed sign-ins: try again in 4 min 10 s."
    assert A.wait_text(0.2) == "1 s" and A.wait_text(3600) == "1 h"


@pytest.mark.parametrize("password,why", [
    ("", "empty"), ("short", "at least 8"), ("alice-pw-x", None), ("Password123", "common passwords"),
    ("alicealice", None), ("x" * 73, "at most 72 bytes"), ("é" * 37, "at most 72 bytes"), ("ALICE12345", "username"),
])
def test_password_rules(password, why):
    got = A.password_problem(password, username="alice12345", minimum_length=8, common=A.common_passwords())
    assert (got is None) if why is None else (why in (got or "")), got


def test_email_rules():
    assert A.email_problem("a@example.org") is None
    for bad in ("", "a", "a@b", "a@example.org\nBcc: x@y.org", "a b@example.org", "a@exa_mple.org"):
        assert A.email_problem(bad), bad
    assert A.email_domain_allowed("x@Lab.Example.org", {"example.org"})
    assert not A.email_domain_allowed("x@notexample.org", {"example.org"})
