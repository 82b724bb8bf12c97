"""One plain address per warning mail: what an identity provider's claim or a user name may not smuggle in (the
culler checks with :mod:`hubfleet.mail`'s check, the project's one)."""

from __future__ import annotations

import re

import pytest

from hubfleet.mail import address_problem, valid_address
from hubfleet.services.culler.notify import Notice, NotifyError, SMTPNotifier


@pytest.mark.parametrize("value", ["alice@uni.example", "a.b+tag@sub.uni.example", "jupyterhub@localhost"])
def test_a_plain_address_passes(value):
    assert address_problem(value) is None
    assert valid_address(value)


@pytest.mark.parametrize("value, why", [
    ("alice@uni.example\r\nBcc: boss@uni.example", "no spaces, line breaks"),
    ("alice@uni.example\nX: 1", "no spaces, line breaks"),
    ("alice@uni.example\n", "no spaces, line breaks"),
    ("al\x00ice@uni.example", "no spaces, line breaks"),
    ("alice@uni.example, boss@uni.example", "no spaces, line breaks, commas"),
    ("alice@uni.example,boss@uni.example", "commas"),
    ("alice@uni.example;boss@uni.example", "commas"),
    ("Boss <boss@uni.example>", "names"),
    ('"a b"@uni.example', "quotes"),
    ("alice", "not of the form local@domain"),
    ("@uni.example", "not of the form local@domain"),
    ("a@b@uni.example", "not of the form local@domain"),
    ("a" * 250 + "@x.org", "longer than 254"),
    ("", "empty"),
    (["alice@uni.example"], "not a string"),
])
def test_anything_else_is_refused_saying_why(value, why):
    assert re.search(why, address_problem(value) or "")
    assert not valid_address(value)


def test_a_bad_auth_state_address_is_not_replaced_by_the_template():
    n = SMTPNotifier(host="smtp", to="{username}@uni.example", to_auth_state=["mail"])
    notice = Notice(user="alice", server="", profile="p", reason="r", cull_after="2026-12-01T10:00:00Z", warn_before=60)
    assert n.address(notice, {"auth_state": {"mail": ["alice@idp.example", "x@y.z"]}}) == "alice@idp.example"
    assert n.address(notice, {"auth_state": {}}) == "alice@uni.example"
    with pytest.raises(NotifyError, match=r"alice's auth state mail is not one address: 'a@x.org, b@x.org'"):
        n.address(notice, {"auth_state": {"mail": "a@x.org, b@x.org"}})


def test_a_budget_warning_says_what_keeps_the_server():
    base = dict(user="a", server="", profile="p", cull_after="2026-12-01T10:00:00Z", warn_before=600)
    budget = Notice(reason="budget used up: you have used 20.1 of 20 GPU-hours in the last 7 days", why="budget",
                    **base).text()
    assert "you have used 20.1 of 20 GPU-hours" in budget and "kept if enough of the budget frees up" in budget
    assert "activity cancels" not in budget
    assert "activity cancels the stop" in Notice(reason="inactive", **base).text()


def test_the_notifiers_are_shared_and_each_notice_brings_its_subject():
    """One notifier code for the culler and the queue; an unset SMTPNotifier.subject takes the notice's own."""
    import hubfleet.notify
    from hubfleet.services.culler import notify as culler_notify
    from hubfleet.spawners.queue_notify import AdmissionNotice

    assert culler_notify.SMTPNotifier is hubfleet.notify.SMTPNotifier
    warning = Notice(user="a", server="", profile="p", reason="r", cull_after="2026-12-01T10:00:00Z", warn_before=60)
    assert warning.subject == "Your JupyterHub server will be stopped soon"
    ready = AdmissionNotice("a", "", "gpu", "GPU", "2026-12-01 10:10", "https://hub.example.org/hub/spawn/a")
    assert ready.subject == "Your JupyterHub server is ready to start"
    assert "Start it by 2026-12-01 10:10 UTC at https://hub.example.org/hub/spawn/a" in ready.text()
    assert AdmissionNotice("a", "", "gpu", "GPU", "", "u").subject == "Your JupyterHub server is starting"
