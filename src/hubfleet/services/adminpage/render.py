"""The admin page's HTML, SVG charts and CSV, built from plain data (pure). Every name, message and log line goes
through :func:`e` (HTML escaping, quotes included); the follow script appends log lines as text nodes, never as
HTML."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from html import escape
from urllib.parse import urlencode

from .usage import Totals

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;
vertical-align:top}th{background:#f3f3f3}pre{background:#111;color:#ddd;padding:.5em;max-height:30em;overflow:auto;
white-space:pre-wrap;word-break:break-all}.warn{background:#fff3cd;border:1px solid #e0c060;padding:.5em}
.muted{color:#777}.charts{display:flex;flex-wrap:wrap;gap:2em}nav a{margin-right:1em}
caption{text-align:left;font-weight:bold;padding:.25em 0}
"""


def e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def ago(when: datetime | None, now: datetime) -> str:
    """``2d 3h``, ``5h 12m``, ``4m 10s``, ``9s``."""
    if when is None:
        return "—"
    s = max(0, int((now - when).total_seconds()))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s % 60}s" if m else f"{s}s"


def page(title: str, body: str, *, prefix: str, hub_prefix: str = "/hub/") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style>"
            f"</head><body><nav><a href='{e(hub_prefix)}home'>Hub home</a><a href='{e(prefix)}'>All servers</a>"
            f"</nav><h1>{e(title)}</h1>{body}</body></html>")


def banner(message: str) -> str:
    return f"<p class='warn' role='alert'>{e(message)}</p>" if message else ""


def servers_table(rows: list[dict], *, prefix: str, now: datetime) -> str:
    """``rows``: dicts with user, server, profile, node, started, last_activity, phase, culler."""
    if not rows:
        return "<p class='muted'>No servers.</p>"
    head = ("<table id='servers'><tr><th>User</th><th>Server</th><th>Profile</th><th>Node</th><th>Phase</th>"
            "<th>Age</th><th>Last activity</th><th>Culler</th><th></th></tr>")
    out = [head]
    for r in rows:
        link = prefix + "server?" + urlencode({"user": r["user"], "server": r["server"]})
        out.append(
            f"<tr><td>{e(r['user'])}</td><td>{e(r['server'] or '(default)')}</td><td>{e(r.get('profile'))}</td>"
            f"<td>{e(r.get('node') or '—')}</td><td>{e(r.get('phase') or '—')}</td>"
            f"<td>{e(ago(r.get('started'), now))}</td><td>{e(ago(r.get('last_activity'), now))} ago</td>"
            f"<td>{e(r.get('culler') or '—')}</td><td><a href='{e(link)}'>events &amp; logs</a></td></tr>")
    out.append("</table>")
    return "".join(out)


def _at(t: float | None) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else "—"


def queue_section(listing: dict | None, *, now: datetime) -> str:
    """The queue per profile from the hub's ``GET /hub/api/queue?all=1`` (``{"queues", "queued"}``, the requests
    already cut to what the viewer may see): position, user, state (admitted with its start-by), joined, expected
    start and at the latest. Empty (no section) when ``listing`` is None or no profile queues."""
    if not listing or not (listing.get("queues") or listing.get("queued")):
        return ""
    queued = listing.get("queued") or []
    if not queued:
        return "<h2>Queue</h2><div id='queue'><p class='muted'>Nobody is waiting.</p></div>"
    out = ["<h2>Queue</h2><div id='queue'>"]
    for profile in sorted({q["profile"] for q in queued}):
        mine = [q for q in queued if q["profile"] == profile]
        waiting = max(q.get("waiting") or 0 for q in mine)
        out.append(f"<table class='queue' data-profile='{e(profile)}'><caption>Profile {e(profile)}: {waiting} "
                   f"waiting</caption><tr><th>Position</th><th>User</th><th>Server</th><th>State</th><th>Joined</th>"
                   f"<th>Expected start</th><th>At the latest</th></tr>")
        for q in mine:
            if q.get("state") == "admitted":
                state = f"admitted, start by {_at(q['start_by'])}" if q.get("start_by") else "admitted, starting"
            else:
                state = str(q.get("state") or "")
            joined = q.get("joined_at")
            since = f" ({ago(datetime.fromtimestamp(joined, timezone.utc), now)} ago)" if joined else ""
            out.append(f"<tr><td>{e(q.get('position') or '—')}</td><td>{e(q.get('user'))}</td>"
                       f"<td>{e(q.get('server_name') or '(default)')}</td><td>{e(state)}</td>"
                       f"<td>{e(_at(joined) + since)}</td><td>{e(_at(q.get('expected')))}</td>"
                       f"<td>{e(_at(q.get('at_latest')))}</td></tr>")
        out.append("</table>")
    out.append("</div>")
    return "".join(out)


def events_table(events: list[dict]) -> str:
    if not events:
        return "<p class='muted'>No events.</p>"
    out = ["<table class='events'><tr><th>Last seen</th><th>Type</th><th>Reason</th><th>Count</th>"
           "<th>Message</th></tr>"]
    for ev in events:
        out.append(f"<tr><td>{e(ev.get('last'))}</td><td>{e(ev.get('type'))}</td><td>{e(ev.get('reason'))}</td>"
                   f"<td>{e(ev.get('count'))}</td><td>{e(ev.get('message'))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def log_block(container: str, lines: list[str], *, follow_url: str, tail: int) -> str:
    cid = "log-" + "".join(c if c.isalnum() else "-" for c in container)
    return (f"<h3>Container {e(container)} <span class='muted'>(last {tail} lines)</span></h3>"
            f"<button class='follow' data-target='{e(cid)}' data-url='{e(follow_url)}'>Follow</button> "
            f"<span class='status' id='{e(cid)}-status'></span>"
            f"<pre id='{e(cid)}'>{e(chr(10).join(lines))}</pre>")


def failures_section(failures) -> str:
    if not failures:
        return "<p class='muted'>No saved failures.</p>"
    out = []
    for f in failures:
        out.append(f"<details><summary>{e(f.at)} — {e(f.profile)} — {e(f.reason)}</summary>"
                   f"{events_table(f.events)}")
        for container, lines in (f.logs or {}).items():
            out.append(f"<h4>{e(container)}</h4><pre>{e(chr(10).join(lines))}</pre>")
        out.append("</details>")
    return "".join(out)


def bar_chart(title: str, values: dict[str, float], *, unit: str, width: int = 520, bar: int = 18,
              max_bars: int = 25) -> str:
    """A horizontal bar chart as inline SVG (``role=img`` with a title, so it reads as a picture)."""
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:max_bars]
    label_w, pad = 150, 4
    height = 30 + max(1, len(items)) * (bar + pad)
    top = max((v for _, v in items), default=0) or 1
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' role='img' class='chart' width='{width}' height='{height}'"
             f" aria-label='{e(title)}'><title>{e(title)}</title>"
             f"<text x='0' y='16' font-size='14' font-weight='bold'>{e(title)}</text>"]
    if not items:
        parts.append("<text x='0' y='40' font-size='12' fill='#777'>no usage in this window</text>")
    for n, (key, value) in enumerate(items):
        y = 26 + n * (bar + pad)
        w = int((width - label_w - 80) * value / top)
        label = key if len(key) <= 22 else key[:21] + "…"
        parts.append(f"<text x='{label_w - 6}' y='{y + bar - 5}' font-size='12' text-anchor='end'>{e(label)}</text>"
                     f"<rect x='{label_w}' y='{y}' width='{max(w, 1)}' height='{bar}' fill='#4a7fc1'>"
                     f"<title>{e(key)}: {value:.2f} {e(unit)}</title></rect>"
                     f"<text x='{label_w + max(w, 1) + 4}' y='{y + bar - 5}' font-size='12'>{value:.3g}</text>")
    parts.append("</svg>")
    return "".join(parts)


def usage_section(totals: dict[str, Totals], *, by: str, days: float, prefix: str, note: str) -> str:
    query = urlencode({"by": by, "days": f"{days:g}"})
    choices = "".join(f"<option value='{b}'{' selected' if b == by else ''}>{b}</option>"
                      for b in ("user", "group", "profile"))
    form = (f"<form method='get' action='{e(prefix)}'>Usage per <select name='by'>{choices}</select> over the last "
            f"<input name='days' size='4' value='{e(f'{days:g}')}'> days <button>Show</button> "
            f"<a href='{e(prefix)}usage.csv?{e(query)}'>CSV</a></form>")
    charts = ("<div class='charts'>"
              + bar_chart(f"Server-hours per {by}", {k: t.server_hours for k, t in totals.items()}, unit="h")
              + bar_chart(f"GPU-hours per {by}", {k: t.gpu_hours for k, t in totals.items() if t.gpu_hours},
                          unit="GPU·h") + "</div>")
    return form + (f"<p class='muted'>{e(note)}</p>" if note else "") + charts


def usage_csv(totals: dict[str, Totals], *, by: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([by, "server_hours", "gpu_hours"])
    for key, t in totals.items():
        # a cell starting with = + - @ is a formula to spreadsheets: quote it as text
        w.writerow(["'" + key if key[:1] in "=+-@\t\r" else key, f"{t.server_hours:.4f}", f"{t.gpu_hours:.4f}"])
    return buf.getvalue()


FOLLOW_JS = """
document.querySelectorAll('button.follow').forEach(function (btn) {
  btn.addEventListener('click', function () {
    var pre = document.getElementById(btn.dataset.target);
    var status = document.getElementById(btn.dataset.target + '-status');
    if (btn.source) { btn.source.close(); btn.source = null; btn.textContent = 'Follow';
                      status.textContent = 'stopped'; return; }
    var es = new EventSource(btn.dataset.url);
    btn.source = es; btn.textContent = 'Stop';
    status.textContent = 'following';
    pre.dataset.following = '1';
    es.onmessage = function (ev) {
      pre.appendChild(document.createTextNode('\\n' + ev.data));
      pre.scrollTop = pre.scrollHeight;
    };
    es.addEventListener('end', function (ev) {
      status.textContent = ev.data; es.close(); btn.source = null; btn.textContent = 'Follow';
    });
    es.onerror = function () { status.textContent = 'disconnected'; };
  });
});
"""
