"""A real SMTP server (aiosmtpd) and a real webhook receiver (an HTTP server on a thread), as fixtures for the
culler's warnings and the queue's admission notices: the process under test reaches both over TCP."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.procs import free_port

FAILING_USER = "w3"  # the webhook answers 500 for this user's notices


class Mailbox:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, box
    controller.stop()


@pytest.fixture
def webhook():
    """A webhook receiver (a real HTTP server on a thread): records each POSTed JSON; answers 500 for FAILING_USER."""
    received: list = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            self.send_response(500 if body.get("user") == FAILING_USER else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/admitted", received
    server.shutdown()
    server.server_close()




def mails_to(box, address):
    return [m for rcpt, m in box.messages if rcpt == [address]]
