"""The shared mail sender's address check (mail.py): one plain address, nothing that could add a header or a
recipient."""

from __future__ import annotations

import pytest

from hubfleet.mail import MailError, SMTPServer, check_address, valid_address


@pytest.mark.parametrize("address", ["ann@example.org", "hub@localhost", "a.b+tag@lab.uni.example"])
def test_plain_addresses_pass(address):
    assert check_address(address) == address and valid_address(address)


@pytest.mark.parametrize("address, why", [
    ("", "empty"), ("a" * 250 + "@b.org", "longer than 254"), (None, "not a string"),
    ("ann@example.org\r\nBcc: eve@evil.example", "line breaks"), ("ann@example.org,eve@evil.example", "commas"),
    ("Ann <ann@example.org>", "names"), ("ann example@org", "spaces"), ("ann\x00@example.org", "line breaks"),
    ("ann@@example.org", "local@domain"), ("ann@-example.org", "not a host name"), ("ann", "local@domain"),
])
def test_anything_else_is_refused_saying_why(address, why):
    with pytest.raises(MailError, match=why):
        check_address(address)
    assert not valid_address(address)


def test_send_refuses_a_bad_address_before_connecting():
    server = SMTPServer("127.0.0.1", port=1)  # nothing listens: a connection attempt would say so instead
    with pytest.raises(MailError, match="not an e-mail address"):
        server.send("hub@example.org", ["ann@example.org\nBcc: eve@evil.example"], "s", "b")
    with pytest.raises(MailError, match="no recipient"):
        server.send("hub@example.org", [], "s", "b")
