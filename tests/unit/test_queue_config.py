"""The queue and budget settings: ``queue: true`` in a profiles document, a full queued profile's card stays
selectable (choosing it joins the queue), and bad budgets or queue options are refused naming the key."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from hubfleet.spawners.budgets import parse_budgets
from hubfleet.spawners.form import build_cards
from hubfleet.spawners.profiles import ProfileConfigError, QuotaCounts, RunningServer, parse_catalog
from hubfleet.spawners.spawner import ProfileSpawner

DOC = {"profiles": [{"slug": "gpu", "quota": 1, "queue": True}, {"slug": "cpu", "quota": 1}]}


def test_a_full_queued_profile_stays_selectable_and_an_unqueued_one_is_disabled():
    catalog = parse_catalog(DOC)
    assert [p.queue for p in catalog.profiles] == [True, False]
    counts = QuotaCounts([RunningServer("ns/a", "gpu"), RunningServer("ns/b", "cpu")])
    cards = {c.slug: c for c in build_cards(catalog.profiles, quotas=catalog.quotas, counts=counts)}
    assert cards["gpu"].disabled_reason is None
    assert cards["cpu"].disabled_reason.startswith("Quota full")


def test_queue_must_be_a_boolean():
    with pytest.raises(ProfileConfigError, match="queue"):
        parse_catalog({"profiles": [{"slug": "gpu", "queue": "yes"}]})


@pytest.mark.parametrize("spec, message", [
    ({"gpu_hours": 0}, r"budgets\[0\].gpu_hours: expected an amount > 0, got 0"),
    ({"gpu_hours": -3}, r"budgets\[0\].gpu_hours: expected an amount > 0"),
    ({"gpu_hours": 1, "window": "7 days"}, r"budgets\[0\].window: '7 days' is not a window"),
    ({"gpu_hours": 1, "window": "0d"}, r"budgets\[0\].window"),
    ({"gpu_hours": 1, "per": "group"}, r"budgets\[0\].group: a per-group budget names its group"),
    ({"gpu_hours": 1, "cpu_hours": 1}, r"budgets\[0\]: give exactly one of gpu_hours, cpu_hours"),
    ({"gpu_hours": 1, "profile": "tpu"}, r"budgets\[0\].profile: unknown profile 'tpu'"),
    ({"gpu_hours": 1, "weekly": True}, r"budgets\[0\]: unknown key\(s\) weekly"),
])
def test_bad_budgets_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_budgets([spec], profiles={"gpu", "cpu"})


def test_bad_queue_options_are_refused_at_configuration():
    with pytest.raises((TraitError, ValueError), match="ProfileSpawner.budgets"):
        ProfileSpawner(budgets=[{"gpu_hours": 0}])
    with pytest.raises((TraitError, ValueError), match="queue_order: expected one of fair_share, fifo"):
        ProfileSpawner(queue_order="random")
    with pytest.raises((TraitError, ValueError), match="queue_group_weights.physics: expected a weight > 0"):
        ProfileSpawner(queue_group_weights={"physics": 0})
    with pytest.raises((TraitError, ValueError), match="queue_window: expected seconds > 0"):
        ProfileSpawner(queue_window=0)
