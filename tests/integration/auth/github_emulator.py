"""A GitHub (Enterprise) OAuth app protocol emulator for tests: ``python github_emulator.py PORT CLIENT_ID SECRET``.

Serves what oauthenticator's GitHubOAuthenticator uses under ``github_url``: the authorization page
(``/login/oauth/authorize``; POST ``sub=<account id>`` to sign in as that account, as a user would on GitHub's
page), the token exchange (``/login/oauth/access_token``: GitHub answers bad client credentials, or a code that is
wrong, expired or issued to another OAuth app, with HTTP 200 and an ``error`` body), and the REST API under ``/api/v3``: ``/user``, ``/user/emails``, ``/user/teams``,
``/orgs/<org>/members/<login>`` (204 member, 404 not). Test control: ``PUT /_control/accounts/<id>`` (``login``,
``name``, ``email``, ``teams``: ``["org:team", ...]``, ``orgs``), ``POST /_control/mode`` (``ok``, ``500``, ``html``,
``hang``, ``other-client``: the next token exchange answers that way). Besides the app of the command line, a
second OAuth app is registered: :data:`OTHER_APP` (its codes are refused to the first app, as on GitHub).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from urllib.parse import urlencode

from aiohttp import web

ACCOUNTS: dict[str, dict] = {}
CODES: dict[str, dict] = {}
TOKENS: dict[str, str] = {}  # access token -> account id
STATE = {"mode": "ok"}
#: another OAuth app registered on the same GitHub: (client id, client secret)
OTHER_APP = ("another-app", "another-app-secret")


def main(port: int, client_id: str, client_secret: str) -> None:
    apps = {client_id: client_secret, OTHER_APP[0]: OTHER_APP[1]}

    async def authorize(request: web.Request):
        q = request.query
        if q.get("client_id") not in apps:
            return web.Response(status=404, text="<html><body>Application not found</body></html>",
                                content_type="text/html")
        if request.method == "GET":
            return web.Response(text="<html><body><form method=post><input name=sub></form></body></html>",
                                content_type="text/html")
        form = await request.post()
        account = form.get("sub", "")
        if account not in ACCOUNTS:
            return web.Response(status=404, text="no such account")
        code = secrets.token_hex(10)
        CODES[code] = {"account": account, "redirect_uri": q.get("redirect_uri", ""), "client_id": q["client_id"]}
        sep = "&" if "?" in q["redirect_uri"] else "?"
        raise web.HTTPFound(q["redirect_uri"] + sep + urlencode({"code": code, "state": q.get("state", "")}))

    async def access_token(request: web.Request):
        form = await request.post()
        mode = STATE["mode"]
        if mode == "500":
            return web.Response(status=500, text="Internal Server Error")
        if mode == "html":
            return web.Response(text="<html><body>Unicorn! This page is taking too long</body></html>",
                                content_type="text/html")
        while STATE["mode"] == "hang":  # no answer until the test sets another mode
            await asyncio.sleep(0.05)
        if apps.get(form.get("client_id")) != form.get("client_secret") or mode == "other-client":
            return web.json_response({"error": "incorrect_client_credentials",
                                      "error_description": "The client_id and/or client_secret passed are incorrect."})
        grant = CODES.pop(form.get("code", ""), None)
        if (grant is None or grant["redirect_uri"] != form.get("redirect_uri")
                or grant["client_id"] != form.get("client_id")):
            return web.json_response({"error": "bad_verification_code",
                                      "error_description": "The code passed is incorrect or expired."})
        token = "gho_" + secrets.token_hex(16)
        TOKENS[token] = grant["account"]
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": "read:org,user:email"})

    def account_of(request: web.Request) -> dict:
        kind, _, token = request.headers.get("Authorization", "").partition(" ")
        if kind.lower() not in ("bearer", "token") or token not in TOKENS:
            raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}', content_type="application/json")
        return ACCOUNTS[TOKENS[token]]

    async def user(request: web.Request):
        a = account_of(request)
        return web.json_response({"login": a["login"], "id": int(a["id"]), "node_id": f"U_{a['id']}",
                                  "type": "User", "site_admin": False, "name": a.get("name"),
                                  "email": a.get("email")})

    async def emails(request: web.Request):
        a = account_of(request)
        return web.json_response([{"email": a.get("email") or f"{a['login']}@users.noreply", "primary": True,
                                   "verified": True}])

    async def teams(request: web.Request):
        a = account_of(request)
        out = []
        for i, t in enumerate(a.get("teams", [])):
            org, team = t.split(":")
            out.append({"id": 1000 + i, "slug": team, "name": team, "organization": {"login": org, "id": 500 + i}})
        return web.json_response(out)

    async def org_member(request: web.Request):
        a = account_of(request)
        org, login = request.match_info["org"], request.match_info["login"]
        member = any(x["login"] == login and org in x.get("orgs", []) for x in ACCOUNTS.values())
        return web.Response(status=204) if member and a else web.json_response({"message": "Not Found"}, status=404)

    async def put_account(request: web.Request):
        body = await request.json()
        ACCOUNTS[request.match_info["id"]] = {"id": request.match_info["id"], **body}
        return web.json_response({"ok": True})

    async def set_mode(request: web.Request):
        STATE["mode"] = (await request.json())["mode"]
        return web.json_response(STATE)

    app = web.Application()
    app.router.add_route("*", "/login/oauth/authorize", authorize)
    app.router.add_post("/login/oauth/access_token", access_token)
    app.router.add_get("/api/v3/user", user)
    app.router.add_get("/api/v3/user/emails", emails)
    app.router.add_get("/api/v3/user/teams", teams)
    app.router.add_get("/api/v3/orgs/{org}/members/{login}", org_member)
    app.router.add_put("/_control/accounts/{id}", put_account)
    app.router.add_post("/_control/mode", set_mode)
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=1)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
