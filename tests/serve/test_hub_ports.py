"""Every student's server on ``make hub`` gets a port of its own (``explorer.serve.hub.choose_port``).

JupyterHub's own choice (bind to port 0, close, hand the number on) gave two of 20 students who logged in at once the
same port: the second server could not start and the hub sent that student to the first one's server."""

from __future__ import annotations

import socket

import pytest

from explorer.serve.hub import _ephemeral_ports, choose_port, port_range


def test_port_range_reads_low_high() -> None:
    assert port_range("20000-29999") == range(20000, 30000)
    assert port_range("25000-25000") == range(25000, 25001)


@pytest.mark.parametrize("text", ["", "20000", "29999-20000", "80-90", "20000-70000", "a-b", "20000:29999"])
def test_port_range_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"low-high") as caught:
        port_range(text)
    assert "\n" not in str(caught.value)


def test_each_server_gets_its_own_port_outside_the_ephemeral_range() -> None:
    ports, taken = port_range("20000-29999"), set[int]()
    for _ in range(200):  # none of them listens yet: only the hub's own record keeps them apart
        port = choose_port("127.0.0.1", ports, taken)
        assert port in ports
        assert port not in taken
        taken.add(port)
    ephemeral = _ephemeral_ports()
    if not set(ports) <= set(ephemeral):
        assert not taken & set(ephemeral)


def test_a_port_something_else_listens_on_is_skipped() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = range(port, port + 2) if port < 65535 else range(port - 1, port + 1)
        other = next(p for p in ports if p != port)
        for _ in range(20):
            assert choose_port("127.0.0.1", ports, set()) == other
        with pytest.raises(RuntimeError, match=rf"no free port for a student's server in {ports.start}-"):
            choose_port("127.0.0.1", ports, {other})
