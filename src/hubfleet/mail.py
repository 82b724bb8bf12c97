"""Sending one e-mail through an SMTP server (blocking: run it on a thread): shared by the parts that send mail.

The server's certificate is verified (STARTTLS or implicit TLS); the password is passed in by the caller, which
reads it from the environment, and is never logged.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from .errors import HubfleetError

_ADDRESS = re.compile(r"^[^\s@<>,;\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class MailError(HubfleetError):
    """The mail could not be handed to the SMTP server (the message names the server and the reason)."""


def valid_address(address: str) -> bool:
    """One plain address (``name@example.org``): no display name, no list, no line break (no header injection)."""
    return bool(address) and len(address) <= 254 and bool(_ADDRESS.match(address))


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
        bad = [a for a in [sender, *to] if not valid_address(a)]
        if bad:
            raise MailError(f"not an e-mail address: {bad[0][:80]!r}")
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
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            raise MailError(f"smtp {self.host}:{self.port}: {type(e).__name__}: {e}") from e
