"""Filter verdicts and scores kept per request shape, up to date from the watch (no I/O, no framework imports).

Pods come in a few shapes (one per profile: requests, strategy, profile). For a ``pack`` shape, the verdict of every
node (``scoring.node_failure``) and its score (``scoring.score_node``) are computed once and then only for the nodes
the cache lists as changed since (a pod bound or gone, a node updated); after a re-list the table is rebuilt aside,
a slice at a time between requests (``rebuild_some``; a request finishes what is left). Each verdict
and score is kept as the JSON fragments it contributes to an answer (``wire.filter_fragments``,
``wire.priority_fragment``), so answering any candidate list is a C-speed ``join(map(...))`` over the names, not a
computation per node; ``wire.encode_filter``/``encode_priorities`` wrap the joined parts.

kube-scheduler sends the same candidate list again and again (every node that passed its own filters; then the
nodes this filter kept). So each table also keeps the answers for the last few candidate lists (``Prepared``): a
call whose list equals a kept one (compared as bytes, or as a list) gets the kept answer bytes; the positions of
nodes changed since are patched and only their blocks of ``BLOCK`` positions re-joined.

The lifetime term moves with the clock (a node's expected drain comes closer): ``refresh_some`` recomputes the
longest-unrefreshed nodes with pods a few at a time (the server calls it between requests). ``spread`` shapes are
scored per call (their zone term depends on every node).
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice

from . import wire
from .scoring import NodeInfo, PodInfo, Policy, View, evaluate_node, not_cached

MAX_TABLES = 64
MAX_PREPARED = 4  # candidate lists kept per table and verb
BLOCK = 128  # positions per re-joined block of a kept answer


def _unknown(name: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The fragments of a name not in the table (not stored: unknown names are whatever a client sends)."""
    return (*wire.filter_fragments(name, (not_cached(name), False)), wire.priority_fragment(name, 0))


def _rows(frags: dict, names: list[str]) -> list[tuple[bytes, bytes, bytes, bytes]]:
    rows = list(map(frags.get, names))  # C speed
    if not all(rows):  # a missing name (tuples are true; faster than "None in rows")
        rows = [_unknown(n) if r is None else r for r, n in zip(rows, names)]
    return rows


class Prepared:
    """The answer to one candidate list: per part (filter: NodeNames, FailedNodes, FailedAndUnresolvableNodes;
    prioritize: the HostPriorityList) the fragment of every position; once the list is asked again after a change,
    also the fragments joined per block of BLOCK positions, so a change re-joins one block; and the whole answer's
    bytes until a position changes."""

    def __init__(self, table: "ShapeTable", names: list[str], verb: str, segment: bytes | None = None):
        self.names, self.verb, self.segment = names, verb, segment
        self.index: dict[str, int] | None = None  # name -> position, built on the first patch
        self.log_pos = len(table.log)
        rows = _rows(table.frags, names)
        if verb == "prioritize":
            self.columns: tuple[int, ...] = (3,)
            self.parts = [[r[3] for r in rows]]
        else:
            self.columns = (0, 1, 2)
            self.parts = [list(c) for c in zip(*rows)][:3] if rows else [[], [], []]
        self.blocks: list[list[bytes]] | None = None
        self.out: bytes | None = None

    def update(self, table: "ShapeTable") -> None:
        """Patch the positions of the nodes whose fragments changed since the last call."""
        if self.log_pos == len(table.log):
            return
        changed = set(table.log[self.log_pos:])
        self.log_pos = len(table.log)
        if self.index is None:
            self.index = {n: i for i, n in enumerate(self.names)}
        index, frags, dirty = self.index, table.frags, set()
        for name in changed:
            i = index.get(name)
            if i is not None:
                row = frags.get(name) or _unknown(name)
                for part, column in zip(self.parts, self.columns):
                    part[i] = row[column]
                dirty.add(i // BLOCK)
        if not dirty:
            return
        if self.blocks is None:
            self.blocks = [[b"".join(p[k:k + BLOCK]) for k in range(0, len(p), BLOCK)] for p in self.parts]
        else:
            for k in dirty:
                for part, blocks in zip(self.parts, self.blocks):
                    blocks[k] = b"".join(part[k * BLOCK:(k + 1) * BLOCK])
        self.out = None

    def render(self) -> bytes:
        if self.out is None:
            pieces = self.parts if self.blocks is None else self.blocks
            joined = [b"".join(p) for p in pieces]
            self.out = wire.encode_priorities(*joined) if self.verb == "prioritize" else wire.encode_filter(*joined)
        return self.out


class ShapeTable:
    def __init__(self, pod: PodInfo, policy: Policy):
        self.pod, self.policy = pod, policy
        self.verdict: dict[str, tuple[str, bool] | None] = {}
        self.score: dict[str, int] = {}
        self.epoch = -1
        self.pos = 0
        self.stale: OrderedDict[str, None] = OrderedDict()  # nodes with pods, least recently refreshed first
        self._next: ShapeTable | None = None  # the table of a new cache epoch, being built (rebuild_some)
        self._todo = self._memo = None
        self._reset()

    def _reset(self) -> None:
        self.verdict, self.score, self.stale = {}, {}, OrderedDict()
        self.log: list[str] = []  # nodes whose verdict or score changed (for the Prepared answers)
        # node -> its fragments in (NodeNames, FailedNodes, FailedAndUnresolvableNodes, HostPriorityList), each
        # ending in a comma or empty (see the module docstring)
        self.frags: dict[str, tuple[bytes, bytes, bytes, bytes]] = {}
        self.prepared: dict[str, list[Prepared]] = {"filter": [], "prioritize": []}

    def _forget(self, name: str) -> None:
        if name in self.verdict:
            del self.verdict[name], self.score[name], self.frags[name]
        self.stale.pop(name, None)
        self.log.append(name)

    def _compute(self, name: str, node: NodeInfo | None, cache, now: float, memo: dict) -> None:
        if node is None:
            self._forget(name)
            return
        used = cache.usage.get(name)
        view = None
        if used:
            drain = cache.drain_at(name, now)
            view = View(now=now, drain_at={name: drain} if drain is not None else {},
                        expected_stay=cache.lifetimes.expected)
        why, score = evaluate_node(self.pod, node, used, self.policy, view, memo)
        self.stale.pop(name, None)
        if used:
            self.stale[name] = None  # nodes with pods: the lifetime term moves with the clock
        if name in self.verdict and self.verdict[name] == why and self.score[name] == score:
            return
        self.verdict[name], self.score[name] = why, score
        self.frags[name] = (*wire.filter_fragments(name, why), wire.priority_fragment(name, score))
        self.log.append(name)

    def sync(self, cache, now: float, limit: int | None = None) -> bool:
        """Recompute the nodes changed since the last sync (at most `limit` changes, oldest first: the refresh task
        catches up in short slices); True when some are left."""
        memo: dict = {}
        if self.epoch != cache.epoch:
            if self._next is not None and self._next.epoch == cache.epoch:  # a rebuild under way: finish it
                self.rebuild_some(cache, now, None)
            else:
                self._reset()
                for name, node in cache.nodes.items():
                    self._compute(name, node, cache, now, memo)
                self.epoch, self.pos = cache.epoch, len(cache.changes)
                return False
        changes = cache.changes
        end = len(changes) if limit is None else min(len(changes), self.pos + limit)
        if self.pos < end:
            for name in set(changes[self.pos:end]):
                self._compute(name, cache.nodes.get(name), cache, now, memo)
            self.pos = end
        if len(self.log) > 100_000:  # compact: the prepared answers are rebuilt on their next use
            self.log = []
            self.prepared = {"filter": [], "prioritize": []}
        return self.pos < len(changes)

    def rebuild_some(self, cache, now: float, batch: int | None) -> bool:
        """After a re-list (a new cache epoch): build the new table aside, `batch` nodes at a time (None: all that
        are left), and take it over once complete; requests meanwhile finish it (``sync``). True while building."""
        if self.epoch == cache.epoch:
            return False
        fresh = self._next
        if fresh is None or fresh.epoch != cache.epoch:
            fresh = self._next = ShapeTable(self.pod, self.policy)
            fresh.epoch, fresh.pos = cache.epoch, len(cache.changes)  # changes from here on: synced after
            self._todo, self._memo = iter(list(cache.nodes.items())), {}
        done = 0
        for name, node in self._todo if batch is None else islice(self._todo, batch):
            fresh._compute(name, node, cache, now, self._memo)
            done += 1
        if batch is not None and done == batch:
            return True
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k not in ("pod", "policy")})
        self._next = self._todo = self._memo = None
        return False

    def refresh_some(self, cache, now: float, batch: int) -> int:
        done = 0
        while self.stale and done < batch:
            name = next(iter(self.stale))
            self._compute(name, cache.nodes.get(name), cache, now, {})
            done += 1
        return done

    def respond(self, verb: str, names: list[str], segment: bytes | None = None) -> bytes:
        """The JSON answer of `verb` ("filter": an ExtenderFilterResult with NodeNames; "prioritize": a
        HostPriorityList) for the candidate list `names` (whose JSON bytes are `segment`, when known)."""
        kept = self.prepared[verb]
        for i, prepared in enumerate(kept):
            if len(prepared.names) == len(names) and prepared.names == names:
                prepared.update(self)
                if segment is not None and prepared.segment is None:
                    prepared.segment = segment
                if i:
                    kept.insert(0, kept.pop(i))
                return prepared.render()
        prepared = Prepared(self, names, verb, segment)
        kept.insert(0, prepared)
        del kept[MAX_PREPARED:]
        return prepared.render()

    def respond_segment(self, verb: str, body: bytes, start: int, end: int) -> bytes | None:
        """The answer for the candidate list whose JSON bytes are ``body[start:end]``, if one was answered before;
        else None (compared in place: no copy of the ~60 KB)."""
        for prepared in self.prepared[verb]:
            if prepared.segment is not None and len(prepared.segment) == end - start \
                    and body.startswith(prepared.segment, start):
                prepared.update(self)
                return prepared.render()
        return None


class Tables:
    """The ShapeTables of the shapes seen lately (at most MAX_TABLES, least recently used dropped)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.tables: OrderedDict[tuple, ShapeTable] = OrderedDict()

    def get(self, pod: PodInfo, cache, now: float) -> ShapeTable:
        table = self.tables.get(pod.shape)
        if table is None:
            table = self.tables[pod.shape] = ShapeTable(pod, self.policy)
            while len(self.tables) > MAX_TABLES:
                self.tables.popitem(last=False)
        else:
            self.tables.move_to_end(pod.shape)
        table.sync(cache, now)
        return table

    def refresh_some(self, cache, now: float, batch: int = 50) -> bool:
        """Between requests, `batch` nodes per table: after a re-list, rebuild the table aside; else catch up with
        the changed nodes; else refresh the longest-unrefreshed ones (the lifetime term moves with the clock). True
        while rebuilds or changes are left."""
        behind = False
        for table in list(self.tables.values()):
            if table.epoch != cache.epoch:  # a re-list: rebuild aside, a slice at a time
                behind = table.rebuild_some(cache, now, batch) or behind
            elif table.sync(cache, now, limit=batch):
                behind = True
            else:
                table.refresh_some(cache, now, batch)
        return behind


__all__ = ["Prepared", "ShapeTable", "Tables"]
