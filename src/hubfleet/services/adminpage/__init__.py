"""The admin page: a hub-managed service (JupyterHub OAuth) listing servers, their pods' events and containers'
logs (tail and follow), saved failures of spawns, and usage (server-hours, GPU-hours) as charts and CSV.

- ``access.py``  (pure) who may see whose servers, from the OAuth token's scopes;
- ``logtext.py`` (pure) bounded, UTF-8-safe log text;
- ``usage.py``   (pure) usage intervals, the :class:`UsageSource` interface, aggregation by user/group/profile;
- ``render.py``  (pure) escaped HTML, server-side SVG charts, CSV;
- ``fleet.py``   (pure) the server rows: the hub's user models joined with their pods;
- ``kube.py``    pods, events and logs of the user namespace (kubernetes_asyncio);
- ``app.py``     the tornado service (``python -m hubfleet.services.adminpage``).
"""
