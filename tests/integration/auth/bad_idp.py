"""A small OIDC provider whose tokens are broken on purpose, run as its own process by the tests.

``POST /_mode {"mode": ..., "claims": {...}}`` chooses what the next token response looks like:

- ``good``            — a correct id_token (iss, aud, exp, nonce, signature from the published JWKS);
- ``wrong_issuer``    — ``iss`` is another provider;
- ``wrong_audience``  — ``aud`` is another client;
- ``expired``         — ``exp`` an hour ago;
- ``bad_signature``   — signed with a key that is not in the JWKS (same ``kid``);
- ``wrong_nonce``     — a ``nonce`` that is not the one the hub sent;
- ``unverified_email``— ``email_verified: false``.

``POST /_expire_access_tokens`` makes every access token issued so far invalid at userinfo (401), so the hub must
use its refresh token (``grant_type=refresh_token`` is answered with fresh tokens and a fresh id_token, whose
claims are the login's updated by ``refresh_claims`` of the last ``/_mode``).

``POST /_revoke_refresh_tokens`` makes every refresh token issued so far invalid (``invalid_grant``).
``bad_idp.py PORT --no-userinfo`` publishes no ``userinfo_endpoint`` (identity comes from id_tokens only);
``--no-refresh-token`` issues no refresh tokens.
``GET /_requests`` lists the paths (with query strings) of the userinfo requests received so far.

The authorize endpoint logs the user in at once (redirect with a code); userinfo returns the same claims.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey

PORT = int(sys.argv[1])
ISSUER = f"http://127.0.0.1:{PORT}"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
NO_USERINFO = "--no-userinfo" in sys.argv[2:]
NO_REFRESH_TOKEN = "--no-refresh-token" in sys.argv[2:]
STATE = {"mode": "good", "claims": {}, "refresh_claims": {}}
USERINFO_REQUESTS: list[str] = []
CODES: dict[str, dict] = {}
TOKENS: dict[str, dict] = {}
REFRESH: dict[str, dict] = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("bad-idp: " + fmt % args + "\n")

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_requests":
            return self._json(USERINFO_REQUESTS)
        if url.path == "/.well-known/openid-configuration":
            doc = {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token",
                "userinfo_endpoint": f"{ISSUER}/userinfo",
                "jwks_uri": f"{ISSUER}/jwks",
                "end_session_endpoint": f"{ISSUER}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
            if NO_USERINFO:
                doc.pop("userinfo_endpoint")
            return self._json(doc)
        if url.path == "/jwks":
            return self._json({"keys": [KEY.as_dict(private=False)]})
        if url.path == "/authorize":
            code = secrets.token_urlsafe(16)
            CODES[code] = {"nonce": q.get("nonce"), "client_id": q.get("client_id"),
                           "challenge": q.get("code_challenge")}
            target = q["redirect_uri"] + ("&" if "?" in q["redirect_uri"] else "?") + urlencode(
                {"code": code, "state": q.get("state", "")})
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return
        if url.path == "/userinfo":
            USERINFO_REQUESTS.append(self.path)
            if NO_USERINFO:
                return self._json({"error": "not found"}, 404)
            token = (self.headers.get("Authorization") or "").split(" ", 1)[-1]
            claims = TOKENS.get(token)
            if claims is None:
                return self._json({"error": "invalid_token"}, 401)
            return self._json(claims)
        self._json({"error": "not found"}, 404)

    def do_POST(self):
        url = urlparse(self.path)
        if url.path == "/_mode":
            data = json.loads(self._body() or b"{}")
            STATE["mode"] = data.get("mode", "good")
            STATE["claims"] = data.get("claims") or {}
            STATE["refresh_claims"] = data.get("refresh_claims") or {}
            return self._json({"ok": True})
        if url.path == "/_expire_access_tokens":
            TOKENS.clear()
            return self._json({"ok": True})
        if url.path == "/_revoke_refresh_tokens":
            REFRESH.clear()
            return self._json({"ok": True})
        if url.path == "/token":
            form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
            if form.get("grant_type") == "refresh_token":
                claims = REFRESH.pop(form.get("refresh_token", ""), None)
                if claims is None:
                    return self._json({"error": "invalid_grant"}, 400)
                claims = {**claims, **STATE["refresh_claims"]}
                access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
                TOKENS[access], REFRESH[refresh] = claims, claims
                now = int(time.time())
                id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": form.get("client_id"),
                                      "iat": now, "exp": now + 600, **claims}, KEY)
                return self._json({"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                                   "expires_in": 600, "id_token": id_token, "scope": "openid profile email"})
            info = CODES.pop(form.get("code", ""), None)
            if info is None:
                return self._json({"error": "invalid_grant"}, 400)
            mode = STATE["mode"]
            now = int(time.time())
            claims = {"sub": "eve", "preferred_username": "eve", "email": "eve@example.org",
                      "email_verified": True, "groups": ["jupyter-users"], **STATE["claims"]}
            id_claims = {"iss": ISSUER, "aud": info["client_id"], "iat": now, "exp": now + 600,
                         "nonce": info["nonce"], **claims}
            key = KEY
            if mode == "wrong_issuer":
                id_claims["iss"] = "http://evil.example.org"
            elif mode == "wrong_audience":
                id_claims["aud"] = "some-other-client"
            elif mode == "expired":
                id_claims["iat"], id_claims["exp"] = now - 7200, now - 3600
            elif mode == "bad_signature":
                key = OTHER_KEY
            elif mode == "wrong_nonce":
                id_claims["nonce"] = "not-the-nonce-you-sent"
            elif mode == "unverified_email":
                id_claims["email_verified"] = claims["email_verified"] = False
            if id_claims.get("nonce") is None:
                id_claims.pop("nonce")
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, id_claims, key)
            access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            TOKENS[access], REFRESH[refresh] = claims, claims
            answer = {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 600,
                      "id_token": id_token, "scope": "openid profile email"}
            if NO_REFRESH_TOKEN:
                answer.pop("refresh_token")
            return self._json(answer)
        self._json({"error": "not found"}, 404)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
