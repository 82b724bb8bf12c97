"""Filter verdicts and scores kept per request shape, up to date from the watch (no I/O, no framework imports).

Pods come in a few shapes (one per profile: requests, strategy, profile). For a ``pack`` shape, the verdict of every
node (``scoring.node_failure``) and its score (``scoring.score_node``, as the HostPriority JSON it is answered
with) are computed once and then only for the nodes the cache lists as changed since (a pod bound or gone, a node
updated); a re-list rebuilds the table. A call then costs a lookup per candidate name instead of the arithmetic.

The lifetime term moves with the clock (a node's expected drain comes closer): ``refresh_some`` recomputes the
longest-unrefreshed nodes with pods a few at a time (the server calls it between requests), so no score is older
than ``nodes with pods / (batch x ticks per second)`` seconds. ``spread`` shapes are scored per call (their zone
term depends on every node).
"""

from __future__ import annotations

from collections import OrderedDict
from . import wire
from .scoring import NodeInfo, PodInfo, Policy, View, node_failure, score_node

MAX_TABLES = 64


class ShapeTable:
    def __init__(self, pod: PodInfo, policy: Policy):
        self.pod, self.policy = pod, policy
        self.verdict: dict[str, tuple[str, bool] | None] = {}
        self.answer: dict[str, bytes] = {}  # node -> b'{"Host":"...","Score":N}'
        self.epoch = -1
        self.pos = 0
        self.stale: OrderedDict[str, None] = OrderedDict()  # nodes with pods, least recently refreshed first

    def _compute(self, name: str, node: NodeInfo | None, cache, now: float, memo: dict) -> None:
        if node is None:
            self.verdict.pop(name, None)
            self.answer.pop(name, None)
            self.stale.pop(name, None)
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
        self.verdict[name] = why
        self.answer[name] = wire.dumps({"Host": name, "Score": score})

    def sync(self, cache, now: float) -> None:
        memo: dict = {}
        if self.epoch != cache.epoch:
            self.verdict, self.answer, self.stale = {}, {}, OrderedDict()
            for name, node in cache.nodes.items():
                self._compute(name, node, cache, now, memo)
            self.epoch, self.pos = cache.epoch, len(cache.changes)
            return
        changes = cache.changes
        if self.pos < len(changes):
            for name in set(changes[self.pos:]):
                self._compute(name, cache.nodes.get(name), cache, now, memo)
            self.pos = len(changes)

    def refresh_some(self, cache, now: float, batch: int) -> int:
        done = 0
        while self.stale and done < batch:
            name = next(iter(self.stale))
            self._compute(name, cache.nodes.get(name), cache, now, {})
            done += 1
        return done


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


def unknown_answer(name: str) -> bytes:
    return wire.dumps({"Host": name, "Score": 0})


__all__ = ["ShapeTable", "Tables", "unknown_answer"]
