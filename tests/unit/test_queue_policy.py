"""The spawn queue's and the budgets' decisions (hubfleet.spawners.queue_policy): who is admitted next, what a waiting
user is shown, and whether a budget of use over a rolling window allows a spawn."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hubfleet.spawners.queue_policy import (FAIR_SHARE, FIFO, QueuePolicyError, Request, Use, accounting_group,
                                            admission_order, budget_check, budget_message, check_weights,
                                            claim_expired, group_usage, join, leave, max_age_deadlines,
                                            next_admitted, positions, shown_wait, slot_frees_at,
                                            used_in_window)

H = 3600.0


def req(user: str, group: str, at: float, profile: str = "gpu") -> Request:
    return Request(user, profile, group, at, seq=int(at))


QUEUE = (req("a1", "a", 1), req("a2", "a", 2), req("b1", "b", 3), req("a3", "a", 4), req("b2", "b", 5))


@pytest.mark.parametrize("order, usage, weights, charge, expected", [
    # plain FIFO: by joining, whatever the usage
    (FIFO, {"a": 0, "b": 100}, {}, 0, ["a1", "a2", "b1", "a3", "b2"]),
    # fair share: the group that used less goes first, FIFO inside it
    (FAIR_SHARE, {"a": 10 * H, "b": 1 * H}, {}, 0, ["b1", "b2", "a1", "a2", "a3"]),
    (FAIR_SHARE, {"a": 1 * H, "b": 10 * H}, {}, 0, ["a1", "a2", "a3", "b1", "b2"]),
    # weights: b may use three times a's share
    (FAIR_SHARE, {"a": 2 * H, "b": 5 * H}, {"b": 3.0}, 0, ["b1", "b2", "a1", "a2", "a3"]),
    (FAIR_SHARE, {"a": 2 * H, "b": 7 * H}, {"b": 3.0}, 0, ["a1", "a2", "a3", "b1", "b2"]),
    # with the use each admission brings, positions after the first alternate between equal groups
    (FAIR_SHARE, {"a": 0, "b": 0}, {}, H, ["a1", "b1", "a2", "b2", "a3"]),
    # a group nobody used yet (no usage entry) counts as 0
    (FAIR_SHARE, {"a": H}, {}, 0, ["b1", "b2", "a1", "a2", "a3"]),
    # equal usage: the oldest request first (FIFO)
    (FAIR_SHARE, {"a": H, "b": H}, {}, 0, ["a1", "a2", "b1", "a3", "b2"]),
])
def test_admission_order(order, usage, weights, charge, expected):
    ordered = admission_order(queue=QUEUE, usage=usage, weights=weights, order=order, charge=charge)
    assert [q.user for q in ordered] == expected
    assert next_admitted(queue=QUEUE, usage=usage, weights=weights, order=order).user == expected[0]


def test_next_admitted_of_an_empty_queue_is_none_and_an_unknown_order_is_refused():
    assert next_admitted(queue=(), usage={}, weights={}) is None
    with pytest.raises(QueuePolicyError, match="order: expected one of fair_share, fifo, got 'lifo'"):
        admission_order(queue=QUEUE, usage={}, weights={}, order="lifo")


def test_joining_twice_keeps_the_first_place_and_leaving_removes_it():
    queue, held = join(queue=QUEUE, request=req("a1", "a", 99))
    assert queue == QUEUE and held is QUEUE[0]
    queue, held = join(queue=QUEUE, request=req("a1", "a", 99, profile="gpu-2"))  # another profile: a new request
    assert len(queue) == len(QUEUE) + 1 and held.profile == "gpu-2"
    assert [q.user for q in leave(queue=QUEUE, user="b1", profile="gpu")] == ["a1", "a2", "a3", "b2"]
    assert leave(queue=QUEUE, user="b1", profile="gpu-2") == QUEUE


USES = [Use("u1", "a", 0, 2 * H, 1.0), Use("u2", "a", H, None, 2.0), Use("u3", "b", 5 * H, 6 * H, 1.0)]


@pytest.mark.parametrize("now, window, who, expected_hours", [
    (3 * H, 10 * H, {}, 2 + 2 * 2),  # u1 2 h, u2 2 GPUs for 2 h (running: up to now)
    (3 * H, 2 * H, {}, 1 + 2 * 2),  # the window [1 h, 3 h]: u1's second hour, all of u2's
    (7 * H, 10 * H, {"group": "b"}, 1),
    (7 * H, 10 * H, {"user": "u2"}, 12),
    (7 * H, 1.5 * H, {"group": "b"}, 0.5),
    (30 * H, 10 * H, {"user": "u1"}, 0),  # out of the window
])
def test_used_in_window(now, window, who, expected_hours):
    assert used_in_window(uses=USES, now=now, window=window, **who) == pytest.approx(expected_hours * H)


def test_group_usage_and_accounting_group():
    assert group_usage(uses=USES, now=7 * H, window=10 * H) == pytest.approx({"a": 14 * H, "b": 1 * H})
    assert accounting_group(groups=["zeta", "alpha"], weights={"zeta": 2}) == "zeta"
    assert accounting_group(groups=["zeta", "alpha"], weights={}) == "alpha"
    assert accounting_group(groups=[], weights={}) == ""


@pytest.mark.parametrize("weights, known, message", [
    ({"a": 0}, None, "weights.a: expected a weight > 0, got 0"),
    ({"a": -1}, None, "weights.a: expected a weight > 0, got -1"),
    ({"a": "2"}, None, "weights.a: expected a weight > 0, got '2'"),
    ({"a": True}, None, "weights.a: expected a weight > 0, got True"),
    ({"nope": 1}, {"a", "b"}, "weights.nope: unknown group 'nope'; the hub's groups are: a, b"),
])
def test_bad_weights_name_the_key(weights, known, message):
    with pytest.raises(QueuePolicyError) as e:
        check_weights(weights, known_groups=known)
    assert message in str(e.value)


@pytest.mark.parametrize("position, ends, cycle, expected", [
    (1, [100, 50, 300], None, 50),
    (2, [100, 50, 300], None, 100),
    (3, [100, 50, 300], None, 300),
    (4, [100, 50, 300], None, None),  # past the running servers, no cycle: unknown
    (4, [100, 50, 300], 1000, 1050),  # the first slot frees again a cycle after it was taken
    (1, [], 1000, None),
    (1, [5], None, 10),  # a deadline already past: now
])
def test_slot_frees_at(position, ends, cycle, expected):
    assert slot_frees_at(now=10, position=position, ends=ends, cycle=cycle) == expected


def test_shown_wait_at_the_latest_only_with_a_max_age():
    shown = shown_wait(now=0, position=2, waiting=3, deadlines=[4 * H, 2 * H], max_age=4 * H,
                       expected_ends=[H, 0.5 * H], expected_session=H)
    assert (shown.position, shown.waiting, shown.at_latest, shown.expected) == (2, 3, 4 * H, H)
    none = shown_wait(now=0, position=1, waiting=1, deadlines=[4 * H], max_age=None, expected_ends=[H],
                      expected_session=H)
    assert none.at_latest is None and none.expected == H


WEEK = 7 * 86400.0


@pytest.mark.parametrize("started, admitted, max_age, window, expected", [
    ([0, H], [], 4 * H, 0, [4 * H, 5 * H]),                      # each running server's started + max_age
    ([0], [2 * H], 4 * H, 600, [4 * H, 6 * H + 600]),           # an admission starts within its claim window
    ([0, H], [2 * H], None, 600, []),                           # no max_age: no deadline, so no upper bound
    ([0], [], 0, 0, []),
])
def test_max_age_deadlines(started, admitted, max_age, window, expected):
    assert max_age_deadlines(started=started, admitted=admitted, max_age=max_age, claim_window=window) == expected


def test_at_the_latest_of_later_positions_counts_the_claim_window():
    """Position 2 with one slot: the slot frees at the first deadline, is claimed (at most `window`) and runs at most
    max_age again."""
    shown = shown_wait(now=0, position=2, waiting=2, deadlines=[H], max_age=4 * H, expected_ends=[],
                       expected_session=None, claim_window=600)
    assert shown.at_latest == H + 4 * H + 600
    assert shown_wait(now=0, position=1, waiting=2, deadlines=[H], max_age=4 * H, expected_ends=[],
                      expected_session=None, claim_window=600).at_latest == H


@pytest.mark.parametrize("admitted_at, window, now, expired", [
    (100, 600, 699, False),
    (100, 600, 700, True),
    (100, 0, 10_000, False),   # started for the user: never expires
    (None, 600, 10_000, False),
])
def test_claim_expired(admitted_at, window, now, expired):
    assert claim_expired(admitted_at=admitted_at, claim_window=window, now=now) is expired


@pytest.mark.parametrize("uses, now, budget, need, ok, frees_at, frees", [
    # 10 of 20 GPU-hours used: fits
    ([Use("u", "g", 0, 10 * H)], 24 * H, 20 * H, 0, True, None, 0),
    # 20 of 20 used: refused until the oldest use leaves the window; at the exact moment the use is below budget
    ([Use("u", "g", 0, 20 * H)], 24 * H, 20 * H, 0, False, WEEK, 0),
    # 19.6 of 20, 2 h needed: 1.6 h must leave the window; the use [0, 19.6 h] leaves from WEEK on, linearly
    ([Use("u", "g", 0, 19.6 * H)], 24 * H, 20 * H, 2 * H, False, WEEK + 1.6 * H, 1.6 * H),
    # 19 of 20 used, 8 h needed: the first use (5 h) leaves entirely, then (from WEEK + 10 h) 2 h of the second
    ([Use("u", "g", 0, 5 * H), Use("u", "g", 10 * H, 24 * H)], 30 * H, 20 * H, 8 * H, False, WEEK + 12 * H, 7 * H),
    # the need alone is above the budget: never
    ([], 0, 2 * H, 3 * H, False, None, 0),
])
def test_budget_check(uses, now, budget, need, ok, frees_at, frees):
    check = budget_check(uses=uses, now=now, window=WEEK, budget=budget, need=need)
    assert check.ok is ok
    if frees_at is None:
        assert check.frees_at is None
    else:
        assert check.frees_at == pytest.approx(frees_at, abs=1)
        assert check.frees == pytest.approx(frees, abs=2)
        after = budget_check(uses=uses, now=check.frees_at + 1, window=WEEK, budget=budget, need=need)
        assert after.ok, "the time said to free enough must free enough"


def test_budget_counts_a_running_server_as_stopping_now_and_only_the_users_own_use():
    uses = [Use("u", "g", 0, None), Use("other", "g", 0, None)]
    check = budget_check(uses=uses, now=20 * H, window=WEEK, budget=20 * H, user="u")
    assert not check.ok and check.used == pytest.approx(20 * H) and check.frees_at == pytest.approx(WEEK, abs=1)
    with pytest.raises(QueuePolicyError, match="budget: expected an amount > 0, got 0"):
        budget_check(uses=uses, now=0, window=WEEK, budget=0)
    with pytest.raises(QueuePolicyError, match="window: expected a duration > 0"):
        budget_check(uses=uses, now=0, window=0, budget=1)


def test_budget_message_names_the_use_the_budget_and_when_it_frees():
    tuesday_10 = datetime(2026, 12, 8, 10, 0, tzinfo=timezone.utc).timestamp()
    start = tuesday_10 - WEEK
    check = budget_check(uses=[Use("u", "g", start - 1.2 * H, start + 18.4 * H)], now=tuesday_10 - 86400,
                         window=WEEK, budget=20 * H, need=1.6 * H)
    assert budget_message(check) == ("you have used 19.6 of 20 GPU-hours in the last 7 days; 1.2 GPU-hours free "
                                     "up on Tue 10:00 UTC")


@pytest.mark.parametrize("order, usage, expected", [
    (FIFO, {"a": 10 * H}, {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}),
    (FAIR_SHARE, {"a": 10 * H, "b": H}, {3: 1, 5: 2, 1: 3, 2: 4, 4: 5}),
])
def test_positions_follow_the_order_of_admission(order, usage, expected):
    assert positions(queue=QUEUE, usage=usage, weights={}, order=order) == expected
    first = next_admitted(queue=QUEUE, usage=usage, weights={}, order=order)
    assert expected[first.seq] == 1
