"""Sending one e-mail through an SMTP server (blocking: run it on a thread): shared by the parts that send mail.

:func:`address_problem` says why a value is not one plain address (:func:`check_address` raises it,
:func:`valid_address` answers yes or no); :meth:`SMTPServer.send` sends one text
mail to checked addresses only, raising :class:`MailError`. The server's certificate is verified (STARTTLS or
implicit TLS); the password is passed in by the caller, which reads it from the environment, and is never logged.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage

from .errors import HubfleetError

_NOT_IN_ADDRESS = frozenset(',;:<>()[]"\\ ')  # separators of address lists, display names, quoting, routes
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


class MailError(HubfleetError):
    """The mail could not be handed to the SMTP server, or an address is unusable (the message says why)."""


def address_problem(value) -> str | None:
    """Why ``value`` is not one plain ``local@domain`` address (``repr`` of it: it may carry line breaks); None
    when it is. No control characters, no lists, no display names or comments, no quoting. The domain may be a
    bare host name (``jupyterhub@localhost``): the SMTP server decides where it delivers."""
    if not isinstance(value, str):
        return f"not a string: {type(value).__name__}"
    if not value or len(value) > 254:
        return f"{value[:80]!r}: empty or longer than 254 characters"
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch in _NOT_IN_ADDRESS for ch in value):
        return f"{value[:80]!r}: one plain address only (no spaces, line breaks, commas, names or quotes)"
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or "@" in local:
        return f"{value[:80]!r}: not of the form local@domain"
    if not _HOST.fullmatch(domain):
        return f"{value[:80]!r}: the domain is not a host name"
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError) as e:
        return f"{value[:80]!r}: not an address ({e})"
    if parsed.addr_spec != value:
        return f"{value[:80]!r}: not a plain address (reads as {parsed.addr_spec!r})"
    return None


def check_address(value) -> str:
    """``value`` if it is one plain address, else :class:`MailError` saying why (:func:`address_problem`)."""
    if problem := address_problem(value):
        raise MailError(f"not an e-mail address: {problem}")
    return value


def valid_address(address) -> bool:
    """One plain address (``name@example.org``): no display name, no list, no line break (no header injection)."""
    return address_problem(address) is None


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
