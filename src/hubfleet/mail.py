"""Sending one e-mail through an SMTP server (blocking: run it on a thread): shared by the parts that send mail.

:func:`check_address` (or :func:`valid_address`) checks one plain address; :meth:`SMTPServer.send` sends one text
mail to checked addresses only, raising :class:`MailError`. The server's certificate is verified (STARTTLS or
implicit TLS); the password is passed in by the caller, which reads it from the environment, and is never logged.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from .errors import HubfleetError

_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_NOT_IN_ADDRESS = set('<>()[]\\,;:"')


class MailError(HubfleetError):
    """The mail could not be handed to the SMTP server, or an address is unusable (the message says why)."""


def check_address(value) -> str:
    """``value`` if it is one plain ``local@domain`` address, else :class:`MailError` saying why (the value shown
    with ``repr``: it may carry line breaks). No control characters or spaces (no header injection), no lists,
    display names, comments or quoting; the domain is a host name."""
    if not isinstance(value, str):
        raise MailError(f"not an e-mail address: a {type(value).__name__}, not a string")
    if not value or len(value) > 254:
        raise MailError(f"not an e-mail address: {value[:80]!r} is empty or longer than 254 characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch in _NOT_IN_ADDRESS for ch in value):
        raise MailError(f"not an e-mail address: {value[:80]!r} (one plain address only: no spaces, line breaks, "
                        f"commas, names or quotes)")
    local, at, domain = value.rpartition("@")
    if not at or not local or "@" in local or not _DOMAIN.match(domain):
        raise MailError(f"not an e-mail address: {value[:80]!r} is not of the form local@host.domain")
    return value


def valid_address(address) -> bool:
    """True when :func:`check_address` accepts ``address``."""
    try:
        check_address(address)
    except MailError:
        return False
    return True


@dataclass(frozen=True)
class SMTPServer:
    host: str
    port: int = 25
    starttls: bool = False
    use_ssl: bool = False
    username: str = ""
    password: str = ""
    timeout: float = 20.0

    def send(self, sender: str, to: list[str], subject: str, body: str) -> None:
        if not to:
            raise MailError("no recipient")
        for address in (sender, *to):
            check_address(address)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(to), subject
        msg.set_content(body)
        context = ssl.create_default_context()
        try:
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls and not self.use_ssl:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(msg, from_addr=sender, to_addrs=list(to))  # the checked addresses only
        except (OSError, smtplib.SMTPException) as e:
            raise MailError(f"smtp {self.host}:{self.port}: {type(e).__name__}: {e}") from e
