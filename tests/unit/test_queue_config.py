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


@pytest.mark.parametrize("value, seconds", [("10m", 600.0), (90, 90.0), ("0", 0.0), (0, 0.0)])
def test_a_profiles_claim_window_is_seconds_or_a_duration(value, seconds):
    catalog = parse_catalog({"profiles": [{"slug": "gpu", "queue": True, "claim_window": value}, {"slug": "cpu"}]})
    assert [p.claim_window for p in catalog.profiles] == [seconds, None]  # None: the queue-wide option


@pytest.mark.parametrize("value", ["ten minutes", -5, "10 parsecs"])
def test_a_bad_claim_window_names_the_key(value):
    with pytest.raises(ProfileConfigError, match=r"profile 'gpu': claim_window: expected a duration"):
        parse_catalog({"profiles": [{"slug": "gpu", "queue": True, "claim_window": value}]})
    with pytest.raises((TraitError, ValueError), match=r"ProfileSpawner.queue_claim_window: expected a duration"):
        ProfileSpawner(queue_claim_window=value)


def test_the_queue_reads_max_age_from_the_culler_policies_file_the_culler_reads(tmp_path):
    """One parser (hubfleet.cullpolicies) for both; the culler's own part (consolidate) does not stop the queue."""
    from hubfleet.cullpolicies import CullPolicy, load_policies
    from hubfleet.services.culler.policies import load_policies as culler_load

    f = tmp_path / "policies.yaml"
    f.write_text("default: {max_age: 8h}\nprofiles:\n  gpu: {timeout: 30m, warn_before: 5m, max_age: 4h, consolidate: "
                 "{idle_after: 10m, node_requests_below: 25}}\n  cpu: {timeout: 1h}\n")
    policies, default = load_policies(str(f), default=CullPolicy(), what="ProfileSpawner.queue_cull_policies_file")
    assert (policies["gpu"].max_age, policies["cpu"].max_age, default.max_age) == (4 * 3600, 8 * 3600, 8 * 3600)
    assert policies["gpu"].consolidate is None
    assert culler_load(str(f), default=CullPolicy())[0]["gpu"].consolidate is not None
