"""Filter verdicts and scores kept per request shape, up to date from the watch (no I/O, no framework imports).

Pods come in a few shapes (one per profile: requests, strategy, profile). For a ``pack`` shape, the verdict of every
node (``scoring.node_failure``) and its score (``scoring.score_node``) are computed once and then only for the nodes
the cache lists as changed since (a pod bound or gone, a node updated); a re-list rebuilds the table.

kube-scheduler sends the same candidate list again and again (every node that passed its own filters; then the
nodes this filter kept). So each table also keeps the answers for the last few candidate lists as JSON fragments,
one per position: a call whose list equals a kept one (a C-speed list comparison) patches the positions of the
nodes whose verdict or score changed since and joins the fragments. A call then costs about the JSON decode of its
body, not a lookup per name.

The lifetime term moves with the clock (a node's expected drain comes closer): ``refresh_some`` recomputes the
longest-unrefreshed nodes with pods a few at a time (the server calls it between requests). ``spread`` shapes are
scored per call (their zone term depends on every node).
"""

from __future__ import annotations

from collections import OrderedDict

from . import wire
from .scoring import NodeInfo, PodInfo, Policy, View, node_failure, score_node

MAX_TABLES = 64
MAX_PREPARED = 4  # candidate lists kept per table and verb
_NOT_CACHED = ("node {} is not (yet) in the extender's node cache", False)


class Prepared:
    """The answer to one candidate list, as fragments per position (``b'"n1",'`` or ``b''``...)."""

    def __init__(self, table: "ShapeTable", names: list[str], verb: str, segment: bytes | None = None):
        self.names, self.verb, self.segment = names, verb, segment
        self.index = {n: i for i, n in enumerate(names)}
        self.log_pos = len(table.log)
        self.generation = table.generation
        if verb == "filter":
            self.ok = [b""] * len(names)
            self.failed = [b""] * len(names)
            self.unresolvable = [b""] * len(names)
        else:
            self.scores = [b""] * len(names)
        for i, name in enumerate(names):
            self._set(table, i, name)

    def _set(self, table: "ShapeTable", i: int, name: str) -> None:
        if self.verb == "prioritize":
            self.scores[i] = table.answer.get(name) or wire.dumps({"Host": name, "Score": 0})
            return
        why = table.verdict.get(name, _NOT_CACHED)
        quoted = wire.dumps(name)
        if why is None:
            self.ok[i], self.failed[i], self.unresolvable[i] = quoted + b",", b"", b""
            return
        reason = why[0].format(name) if why is _NOT_CACHED else why[0]
        part = quoted + b":" + wire.dumps(reason) + b","
        self.ok[i] = b""
        self.failed[i], self.unresolvable[i] = (b"", part) if why[1] else (part, b"")

    def update(self, table: "ShapeTable") -> None:
        for name in set(table.log[self.log_pos:]):
            i = self.index.get(name)
            if i is not None:
                self._set(table, i, name)
        self.log_pos = len(table.log)

    def render(self) -> bytes:
        if self.verb == "prioritize":
            return b"[" + b",".join(self.scores) + b"]"
        return (b'{"Nodes":null,"NodeNames":[' + b"".join(self.ok).rstrip(b",") + b'],"FailedNodes":{'
                + b"".join(self.failed).rstrip(b",") + b'},"FailedAndUnresolvableNodes":{'
                + b"".join(self.unresolvable).rstrip(b",") + b'},"Error":""}')


class ShapeTable:
    def __init__(self, pod: PodInfo, policy: Policy):
        self.pod, self.policy = pod, policy
        self.verdict: dict[str, tuple[str, bool] | None] = {}
        self.answer: dict[str, bytes] = {}  # node -> b'{"Host":"...","Score":N}'
        self.epoch = -1
        self.pos = 0
        self.stale: OrderedDict[str, None] = OrderedDict()  # nodes with pods, least recently refreshed first
        self.log: list[str] = []  # nodes whose verdict or answer changed (for the Prepared answers)
        self.generation = 0
        self.prepared: dict[str, list[Prepared]] = {"filter": [], "prioritize": []}

    def _compute(self, name: str, node: NodeInfo | None, cache, now: float, memo: dict) -> None:
        if node is None:
            self.verdict.pop(name, None)
            self.answer.pop(name, None)
            self.stale.pop(name, None)
            self.log.append(name)
            return
        used = cache.usage.get(name)
        if not used:  # empty nodes of one pool share their verdict and score
            key = (node.shape, self.policy.is_gpu_only(node), node.to_be_deleted, node.deletion_candidate)
            hit = memo.get(key)
            if hit is None:
                why = node_failure(self.pod.requests, node, {}, self.policy)
                hit = memo[key] = (why, score_node(self.pod.requests, node, {}, self.policy, pod=self.pod))
            why, score = hit
            self.stale.pop(name, None)
        else:
            why = node_failure(self.pod.requests, node, used, self.policy)
            drain = cache.drain_at(name, now)
            view = View(now=now, drain_at={name: drain} if drain is not None else {},
                        expected_stay=cache.lifetimes.expected)
            score = score_node(self.pod.requests, node, used, self.policy, pod=self.pod, view=view)
            self.stale.pop(name, None)
            self.stale[name] = None
        answer = wire.dumps({"Host": name, "Score": score})
        if name not in self.verdict or self.verdict[name] != why or self.answer.get(name) != answer:
            self.verdict[name] = why
            self.answer[name] = answer
            self.log.append(name)

    def sync(self, cache, now: float) -> None:
        memo: dict = {}
        if self.epoch != cache.epoch:
            self.verdict, self.answer, self.stale, self.log = {}, {}, OrderedDict(), []
            self.generation += 1
            for name, node in cache.nodes.items():
                self._compute(name, node, cache, now, memo)
            self.epoch, self.pos = cache.epoch, len(cache.changes)
            return
        changes = cache.changes
        if self.pos < len(changes):
            for name in set(changes[self.pos:]):
                self._compute(name, cache.nodes.get(name), cache, now, memo)
            self.pos = len(changes)
        if len(self.log) > 100_000:  # compact: the prepared answers are rebuilt on their next use
            self.log = []
            self.generation += 1

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
            if prepared.generation == self.generation and len(prepared.names) == len(names) \
                    and prepared.names == names:
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


    def respond_segment(self, verb: str, segment: bytes) -> bytes | None:
        """The answer for a candidate list known by its JSON bytes, if one was answered before; else None."""
        for prepared in self.prepared[verb]:
            if prepared.generation == self.generation and prepared.segment is not None \
                    and len(prepared.segment) == len(segment) and prepared.segment == segment:
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

    def refresh_some(self, cache, now: float, batch: int = 50) -> int:
        done = 0
        for table in list(self.tables.values()):
            if table.epoch == cache.epoch:
                table.sync(cache, now)
                done += table.refresh_some(cache, now, batch)
        return done


__all__ = ["Prepared", "ShapeTable", "Tables"]
