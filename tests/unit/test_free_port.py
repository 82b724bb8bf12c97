"""free_port: ports for servers about to start, outside the kernel's ephemeral range (where an outgoing connection
could take one before its server binds it), never the same twice in a process, never one that is held."""

from __future__ import annotations

import socket

import pytest

from hubfleet_devcluster import procs

pytestmark = pytest.mark.stack_independent  # the devcluster (a test/demo tool) never runs in the hub image


def test_ports_are_below_the_ephemeral_range_and_never_repeat(monkeypatch):
    monkeypatch.delenv("HUBFLEET_PORT_RANGE", raising=False)
    lo, hi = procs._port_range()
    ephemeral = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    assert (lo, hi) == (10000, ephemeral - 1)
    ports = [procs.free_port() for _ in range(200)]
    assert len(set(ports)) == 200 and all(lo <= p <= hi for p in ports)


def test_a_held_port_is_skipped_and_the_range_is_kept(monkeypatch):
    monkeypatch.setenv("HUBFLEET_PORT_RANGE", "23000-23002")
    monkeypatch.setattr(procs, "_next_port", [23000])
    with socket.socket() as held:
        held.bind(("127.0.0.1", 23001))
        held.listen()
        assert [procs.free_port() for _ in range(4)] == [23000, 23002, 23000, 23002]


def test_a_full_range_says_so(monkeypatch):
    monkeypatch.setenv("HUBFLEET_PORT_RANGE", "23010-23010")
    monkeypatch.setattr(procs, "_next_port", [23010])
    with socket.socket() as held:
        held.bind(("127.0.0.1", 23010))
        held.listen()
        with pytest.raises(OSError, match="no free port in 23010-23010"):
            procs.free_port()


@pytest.mark.parametrize("given", ["10000", "abc-def", "22000-21000", "80-90"])
def test_a_bad_range_names_the_variable(monkeypatch, given):
    monkeypatch.setenv("HUBFLEET_PORT_RANGE", given)
    with pytest.raises(ValueError, match="HUBFLEET_PORT_RANGE=.*expected LOW-HIGH within 1024-65535"):
        procs.free_port()
