"""Real servers for the authenticator tests and bench: slapd (StartTLS, self-signed CA, memberOf overlay, nested
groups), oidc-provider-mock, a purpose-built bad OIDC provider, a TCP proxy that can forward / hang / refuse / delay,
and a JupyterHub subprocess with the real configurable-http-proxy.

Every server runs in its own process group (tests/procs.py ``Proc``), on its own free port, in its own temp dir.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.procs import CHP_BIN, VENV_BIN, Proc, free_port, wait_for

HERE = Path(__file__).resolve().parent
BASE_DN = "dc=hubfleet,dc=test"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PW = "root-secret"
SVC_DN = f"cn=hub-svc,ou=services,{BASE_DN}"
SVC_PW = "svc-secret"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
PROJECTS = f"ou=projects,{BASE_DN}"

# name -> (password, mail, displayName); the directory the tests and the bench use
LDAP_USERS = {
    "alice": ("alice-pw", "alice@example.org", "Alice Liddell"),  # jupyter-users (direct)
    "bob": ("bob-pw", "bob@example.org", "Bob"),  # data-science -> jupyter-users (nested)
    "carol": ("carol-pw", "carol@example.org", "Carol"),  # no group: denied
    "dave": ("dave-pw", "dave@example.org", "Dave"),  # platform-team -> hub-admins (nested admin group)
    "erin": ("erin-pw", "erin@example.org", "Erin"),  # posixGroup posix-users (memberUid)
    "frank": ("frank-pw", "frank@example.org", "Frank"),  # groupOfUniqueNames unique-users
    "grace": ("grace-pw", "grace@example.org", "Grace"),  # project-x, outside the group search base: memberOf only
    "heidi": ("heidi-pw", "heidi@example.org", "Heidi"),  # deep-1 -> ... -> deep-4 -> jupyter-users (too deep)
    "ivan": ("ivan-pw", "ivan@example.org", "Ivan"),  # cyc-a <-> cyc-b -> jupyter-users (cycle)
    "judy": ("judy-pw", "judy@example.org", "Judy"),  # stored as uid "Judy": case variants
    "mallory": ("mallory-pw", "mallory@example.org", "Mallory"),  # jupyter-users, blocked_users in the hub
    "alice2": ("alice2-pw", "alice2@example.org", "Not Alice"),  # a neighbour name for injection tests
}
for i in range(20):  # bench users
    LDAP_USERS[f"bench{i:02d}"] = (f"bench{i:02d}-pw", f"bench{i:02d}@example.org", f"Bench {i}")

# group cn -> (objectClass, members); members are user names, or "group:<cn>" for a nested group
LDAP_GROUPS = {
    "jupyter-users": ("groupOfNames", ["alice", "mallory", "alice2", "group:data-science", "group:deep-4",
                                       "group:cyc-b"] + [f"bench{i:02d}" for i in range(20)]),
    "data-science": ("groupOfNames", ["bob"]),
    "hub-admins": ("groupOfNames", ["group:platform-team"]),
    "platform-team": ("groupOfNames", ["dave"]),
    "posix-users": ("posixGroup", ["erin"]),
    "unique-users": ("groupOfUniqueNames", ["frank"]),
    "deep-1": ("groupOfNames", ["heidi"]),
    "deep-2": ("groupOfNames", ["group:deep-1"]),
    "deep-3": ("groupOfNames", ["group:deep-2"]),
    "deep-4": ("groupOfNames", ["group:deep-3"]),
    "cyc-a": ("groupOfNames", ["ivan", "group:cyc-b"]),
    "cyc-b": ("groupOfNames", ["group:cyc-a"]),
    "judy-team": ("groupOfNames", ["judy"]),
}
PROJECT_GROUPS = {"project-x": ["grace"]}


def user_dn(name: str) -> str:
    uid = "Judy" if name == "judy" else name
    return f"uid={uid},{PEOPLE}"


def _group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def build_ldif() -> str:
    out = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: hubfleet\no: hubfleet test\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {PROJECTS}\nobjectClass: organizationalUnit\nou: projects\n",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SVC_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: hub-svc\n"
        f"userPassword: {SVC_PW}\n",
    ]
    for i, (name, (pw, mail, display)) in enumerate(LDAP_USERS.items()):
        uid = "Judy" if name == "judy" else name
        out.append(
            f"dn: {user_dn(name)}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {uid}\ncn: {display}\n"
            f"sn: {display.split()[-1]}\nmail: {mail}\ndisplayName: {display}\nuserPassword: {pw}\n"
            f"uidNumber: {10000 + i}\ngidNumber: 10000\nhomeDirectory: /home/{name}\n"
        )
    # groups in dependency order (a nested group must exist before the group naming it)
    done: set[str] = set()

    def emit(cn: str):
        if cn in done:
            return
        done.add(cn)
        oc, members = LDAP_GROUPS[cn]
        for m in members:
            if m.startswith("group:") and m[6:] != cn and m[6:] not in done and cn != "cyc-a":
                emit(m[6:])
        lines = [f"dn: {_group_dn(cn)}", f"objectClass: {oc}", f"cn: {cn}"]
        if oc == "posixGroup":
            lines.append("gidNumber: 20000")
            lines += [f"memberUid: {m}" for m in members]
        else:
            attr = "uniqueMember" if oc == "groupOfUniqueNames" else "member"
            for m in members:
                if cn == "cyc-a" and m == "group:cyc-b":
                    continue  # added after cyc-b exists (see below)
                lines.append(f"{attr}: {_group_dn(m[6:]) if m.startswith('group:') else user_dn(m)}")
        out.append("\n".join(lines) + "\n")

    for cn in LDAP_GROUPS:
        emit(cn)
    for cn, members in PROJECT_GROUPS.items():
        out.append(f"dn: cn={cn},{PROJECTS}\nobjectClass: groupOfNames\ncn: {cn}\n"
                   + "".join(f"member: {user_dn(m)}\n" for m in members))
    return "\n".join(out)


CYCLE_MODIFY = f"dn: {_group_dn('cyc-a')}\nchangetype: modify\nadd: member\nmember: {_group_dn('cyc-b')}\n"


def make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@dataclass
class Slapd:
    proc: Proc
    port: int
    ldaps_port: int
    ca_file: Path
    tmp: Path

    @property
    def url(self) -> str:
        return f"ldap://localhost:{self.port}"

    def ldapmodify(self, ldif: str) -> None:
        subprocess.run(
            ["ldapmodify", "-x", "-H", f"ldap://127.0.0.1:{self.port}", "-D", ROOT_DN, "-w", ROOT_PW],
            input=ldif.encode(), check=True, capture_output=True, timeout=10,
        )

    def log_text(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def stop(self):
        self.proc.stop()


def start_slapd(tmp: Path, *, log_level: str = "0", extra_conf: str = "") -> Slapd:
    """Start slapd; ``log_level="stats"`` logs every operation (BIND dn=..., SRCH filter=...) to its log file.
    ``extra_conf`` is appended to slapd.conf (e.g. another database)."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp)
    db = tmp / "db"
    db.mkdir(exist_ok=True)
    conf = tmp / "slapd.conf"
    conf.write_text(textwrap.dedent(f"""\
        include /etc/ldap/schema/core.schema
        include /etc/ldap/schema/cosine.schema
        include /etc/ldap/schema/inetorgperson.schema
        include /etc/ldap/schema/nis.schema
        modulepath /usr/lib/ldap
        moduleload back_mdb
        moduleload memberof
        pidfile {tmp}/slapd.pid
        argsfile {tmp}/slapd.args
        TLSCertificateFile {cert}
        TLSCertificateKeyFile {key}
        threads 8
        database mdb
        maxsize 104857600
        suffix "{BASE_DN}"
        rootdn "{ROOT_DN}"
        rootpw {ROOT_PW}
        directory {db}
        overlay memberof
        access to attrs=userPassword by self write by anonymous auth by * none
        access to * by * read
        """) + textwrap.dedent(extra_conf))
    subprocess.run(["slaptest", "-f", str(conf), "-u"], check=True, capture_output=True)
    port, ldaps_port = free_port(), free_port()
    proc = Proc("slapd", ["/usr/sbin/slapd", "-f", conf, "-h",
                          f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/", "-d", log_level], tmp)
    proc.wait_for_port("127.0.0.1", port, timeout=15)
    ldif = tmp / "tree.ldif"
    ldif.write_text(build_ldif())
    r = subprocess.run(["ldapadd", "-x", "-H", f"ldap://127.0.0.1:{port}", "-D", ROOT_DN, "-w", ROOT_PW,
                        "-f", str(ldif)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        proc.stop()
        raise RuntimeError(f"ldapadd failed ({r.returncode}): {r.stderr}\n{proc.log_tail()}")
    s = Slapd(proc, port, ldaps_port, cert, tmp)
    s.ldapmodify(CYCLE_MODIFY)
    return s


# ---------------------------------------------------------------------------------------------------------------
class TcpProxy:
    """An asyncio TCP forwarder in a thread. Modes: ``forward``, ``hang`` (accept, relay nothing: existing
    connections stall too), ``refuse`` (close new and existing connections). ``delay`` seconds are added before
    every chunk from the server to the client (order kept)."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.0):
        self.target = (target_host, target_port)
        self.delay = delay
        self.mode = "forward"
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("tcp proxy did not start")

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._started.set()
        self._loop.run_forever()

    async def _pipe(self, reader, writer, delayed: bool):
        queue: asyncio.Queue = asyncio.Queue()

        async def read():
            try:
                while True:
                    data = await reader.read(65536)
                    await queue.put((time.monotonic(), data))
                    if not data:
                        return
            except (ConnectionError, asyncio.CancelledError):
                await queue.put((time.monotonic(), b""))

        task = asyncio.ensure_future(read())
        try:
            while True:
                t, data = await queue.get()
                while self.mode == "hang":
                    await asyncio.sleep(0.05)
                if delayed and self.delay:
                    wait = t + self.delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if not data or self.mode == "refuse":
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            task.cancel()
            writer.close()

    async def _handle(self, creader, cwriter):
        if self.mode == "refuse":
            cwriter.close()
            return
        self._writers.add(cwriter)
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            return
        self._writers.add(swriter)
        await asyncio.gather(self._pipe(creader, swriter, False), self._pipe(sreader, cwriter, True),
                             return_exceptions=True)
        self._writers.discard(cwriter)
        self._writers.discard(swriter)

    def set_mode(self, mode: str):
        assert mode in ("forward", "hang", "refuse")
        self.mode = mode
        if mode == "refuse":
            def close_all():
                for w in list(self._writers):
                    w.close()
            self._loop.call_soon_threadsafe(close_all)

    def stop(self):
        async def _shutdown():
            self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def hanging_listener() -> tuple[int, object]:
    """A socket that accepts TCP connections (backlog) and never answers: a hanging server."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s.getsockname()[1], s


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class OidcMock:
    proc: Proc
    port: int

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_user(self, sub: str, claims: dict) -> None:
        r = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5)
        r.raise_for_status()

    def stop(self):
        self.proc.stop()


def start_oidc_mock(tmp: Path) -> OidcMock:
    port = free_port()
    proc = Proc("oidc-provider-mock", [VENV_BIN / "oidc-provider-mock", "-p", port, "-n", "true"], tmp)
    proc.wait_for_port("127.0.0.1", port, timeout=20)
    return OidcMock(proc, port)


@dataclass
class BadIdp:
    """tests/integration/auth/bad_idp.py: an OIDC provider whose next token is broken on purpose."""

    proc: Proc
    port: int

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str, refresh_claims: dict | None = None, **claims) -> None:
        """``claims`` go into the next login's tokens, ``refresh_claims`` into those of refresh-token grants."""
        requests.post(f"{self.issuer}/_mode", json={"mode": mode, "claims": claims,
                                                    "refresh_claims": refresh_claims or {}},
                      timeout=5).raise_for_status()

    def stop(self):
        self.proc.stop()


def start_bad_idp(tmp: Path, *flags: str) -> BadIdp:
    """``flags``: see bad_idp.py (``--no-userinfo``)."""
    port = free_port()
    proc = Proc("bad-idp", [sys.executable, HERE / "bad_idp.py", str(port), *flags], tmp)
    proc.wait_for_port("127.0.0.1", port, timeout=20)
    return BadIdp(proc, port)


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Hub:
    proc: Proc
    url: str  # public URL, through configurable-http-proxy
    token: str  # a service token with admin:users, admin:groups, admin:auth_state
    tmp: Path
    extra: dict = field(default_factory=dict)

    def api(self, method: str, path: str, **kw):
        return requests.request(method, f"{self.url}/hub/api{path}",
                                headers={"Authorization": f"token {self.token}"}, timeout=kw.pop("timeout", 10), **kw)

    @property
    def db_url(self) -> str:
        """The hub's database (start_hub's default; a config may point it elsewhere)."""
        return f"sqlite:///{self.tmp}/jupyterhub.sqlite"

    def user(self, name: str) -> dict | None:
        r = self.api("GET", f"/users/{name}")
        return r.json() if r.status_code == 200 else None

    def log_tail(self, n: int = 80) -> str:
        return self.proc.log_tail(n)

    def stop(self):
        self.proc.stop(timeout=10)


HUB_TOKEN = "hubfleet-test-service-token-0123456789abcdef"


def start_hub(tmp: Path, authenticator_config: str, *, name: str = "hub", extra_env: dict | None = None,
              debug: bool = True, workdir: Path | None = None) -> Hub:
    """Start ``jupyterhub`` with ``authenticator_config`` (Python lines using ``c``) behind the real CHP.

    The config, database and cookie secret are in ``tmp``; the hub runs in ``workdir`` (default ``tmp``): a fresh
    empty one at each start is what z2jh does with ``hub.db.type: postgres`` (no volume at /srv/jupyterhub)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port, hub_port, api_port = free_port(), free_port(), free_port()
    cfg = tmp / "jupyterhub_config.py"
    cfg.write_text(
        textwrap.dedent(f"""\
        c = get_config()  # noqa
        c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {hub_port}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
        c.ConfigurableHTTPProxy.command = [{str(CHP_BIN)!r}]
        c.ConfigurableHTTPProxy.auth_token = "proxy-token-for-tests"
        c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
        c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
        c.JupyterHub.pid_file = "{tmp}/jupyterhub.pid"
        c.JupyterHub.cleanup_servers = True
        c.JupyterHub.services = [{{"name": "tester", "api_token": {HUB_TOKEN!r}}}]
        c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
            "scopes": ["admin:users", "admin:groups", "admin:auth_state", "admin:servers"]}}]
        c.Authenticator.enable_auth_state = True
        """) + textwrap.dedent(authenticator_config)
    )
    env = {"JUPYTERHUB_CRYPT_KEY": "0" * 64, "CONFIGPROXY_AUTH_TOKEN": "proxy-token-for-tests"}
    env.update(extra_env or {})
    proc = Proc(name, [VENV_BIN / "jupyterhub", "-f", cfg] + (["--debug"] if debug else []), tmp, env=env,
                cwd=workdir or tmp)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {proc.popen.returncode}:\n{proc.log_tail(120)}")
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return Hub(proc, url, HUB_TOKEN, tmp)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.stop()
    raise TimeoutError(f"jupyterhub not ready at {url}/hub/api/ within 60 s:\n{proc.log_tail(120)}")


# ---------------------------------------------------------------------------------------------------------------
_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


@dataclass
class LoginResult:
    status: int
    location: str
    body: str
    session: requests.Session
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 302 and "/hub/login" not in self.location

    @property
    def error(self) -> str:
        m = re.search(r'class="login_error[^"]*"[^>]*>(.*?)</p>', self.body, re.S)
        return (m.group(1).strip() if m else "").replace("&#39;", "'")


def form_login(hub_url: str, username: str, password: str, timeout: float = 30) -> LoginResult:
    """Log in through the real login page: GET /hub/login (xsrf), POST the form."""
    s = requests.Session()
    r = s.get(f"{hub_url}/hub/login", timeout=timeout)
    r.raise_for_status()
    m = _XSRF.search(r.text)
    xsrf = m.group(1) if m else s.cookies.get("_xsrf", "")
    t0 = time.monotonic()
    r = s.post(f"{hub_url}/hub/login", data={"username": username, "password": password, "_xsrf": xsrf},
               allow_redirects=False, timeout=timeout)
    return LoginResult(r.status_code, r.headers.get("Location", ""), r.text, s, time.monotonic() - t0)


def whoami(session: requests.Session, hub_url: str) -> str | None:
    """The user a browser session is logged in as (GET /hub/api/user with the session cookie)."""
    r = session.get(f"{hub_url}/hub/api/user", timeout=10)
    if r.status_code != 200:
        return None
    return r.json().get("name")


def wait_refreshed(what: str, hub, session: requests.Session, check, timeout: float = 30):
    """Request ``/hub/api/user`` as ``session`` (each request lets the hub refresh the user once its
    ``auth_refresh_age`` has passed) until ``check(whoami)`` holds: the refresh is awaited as an event, never as a
    fixed sleep. Returns what ``check`` returned."""
    return wait_for(what, lambda: check(whoami(session, hub.url)), timeout=timeout, interval=0.2,
                    seen=lambda: hub.log_tail(15))


@dataclass
class OidcLogin:
    status: int
    location: str
    body: str
    session: requests.Session
    authorize_url: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 302 and "/hub/login" not in self.location and "oauth" not in self.location

    @property
    def text(self) -> str:
        import html as _html

        return _html.unescape(re.sub(r"<[^>]+>", " ", self.body))


def oidc_login(hub_url: str, backend: str, *, sub: str | None = None, session: requests.Session | None = None,
               tamper_state: bool = False, timeout: float = 30) -> OidcLogin:
    """The browser's authorization-code round trip: hub /oauth_login/<backend> -> provider -> hub callback.

    With ``sub`` the provider's authorize form (oidc-provider-mock) is submitted for that subject; without it the
    provider is expected to redirect back at once (bad_idp.py). ``backend=""``: a hub running one OIDC backend on
    its own (``/hub/oauth_login``)."""
    s = session or requests.Session()
    login = f"{hub_url}/hub/oauth_login" + (f"/{backend}" if backend else "")
    r = s.get(login, allow_redirects=False, timeout=timeout)
    if r.status_code != 302:
        return OidcLogin(r.status_code, r.headers.get("Location", ""), r.text, s)
    authorize = r.headers["Location"]
    if sub is not None:
        r = s.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=timeout)
    else:
        r = s.get(authorize, allow_redirects=False, timeout=timeout)
    if r.status_code != 302:
        raise AssertionError(f"provider did not redirect back: {r.status_code} {r.text[:500]}")
    callback = r.headers["Location"]
    if tamper_state:
        callback = re.sub(r"state=[^&]+", "state=eyJzdGF0ZV9pZCI6ICJmb3JnZWQifQ", callback)
    r = s.get(callback, allow_redirects=False, timeout=timeout)
    return OidcLogin(r.status_code, r.headers.get("Location", ""), r.text, s, authorize)


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class GitHubEmulator:
    """tests/integration/auth/github_emulator.py: GitHub Enterprise's OAuth app protocol and REST API."""

    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_account(self, account_id: int, login: str, *, teams: tuple = (), orgs: tuple = (), **info) -> None:
        requests.put(f"{self.url}/_control/accounts/{account_id}",
                     json={"login": login, "teams": list(teams), "orgs": list(orgs), **info},
                     timeout=5).raise_for_status()

    def set_mode(self, mode: str) -> None:
        requests.post(f"{self.url}/_control/mode", json={"mode": mode}, timeout=5).raise_for_status()

    def stop(self):
        self.proc.stop()


def start_github_emulator(tmp: Path, client_id: str, client_secret: str) -> GitHubEmulator:
    port = free_port()
    proc = Proc("github-emulator", [sys.executable, HERE / "github_emulator.py", str(port), client_id, client_secret],
                tmp)
    proc.wait_for_port("127.0.0.1", port, timeout=20)
    return GitHubEmulator(proc, port)


def side_by_side(scenario, cases: dict, timeout: float = 600) -> dict:
    """``scenario(*args)`` for every ``key: args`` of ``cases`` on threads at once (hub start-ups dominate): key ->
    its result, or the exception it raised (reported by that case's test)."""
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {key: pool.submit(scenario, *args) for key, args in cases.items()}
        results = {}
        for key, f in futures.items():
            try:
                results[key] = f.result(timeout=timeout)
            except Exception as e:
                results[key] = e
        return results


def doc_example(doc: Path, tag: str, swaps: dict[str, str]) -> str:
    """The python block after ``<!-- example: TAG -->`` in ``doc``, with each ``old: new`` of ``swaps`` replaced
    (each must be there: a changed example fails here, naming what is gone)."""
    m = re.search(rf"<!-- example: {re.escape(tag)} -->\n```python\n(.*?)```", doc.read_text(), re.S)
    assert m, f"{doc}: the example after '<!-- example: {tag} -->' is gone"
    example = m.group(1)
    for old, new in swaps.items():
        assert old in example, f"the doc's {tag} example no longer contains {old!r}: update the test's swaps"
        example = example.replace(old, new)
    return example
