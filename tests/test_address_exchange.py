"""The address exchange that builds TensorFlow's TF_CONFIG: every node learns every worker's address in
node-rank order, nodes with different options are refused, and a node that never comes is a timeout.

Two "nodes" are two threads of this process meeting at a store on 127.0.0.1; no TensorFlow starts.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.address_exchange import JoinTimeout, exchange, own_address
from benchmarks.cell import CellConfig
from benchmarks.frameworks.keras_tf_cell import tf_config
from benchmarks.multinode import MultiNodeError, NodeSetup, peer_lost


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def placed(rank: int, port: int, seed: int = 0, join_timeout_s: float = 30) -> CellConfig:
    cell = CellConfig("keras", "cifar100-single", "train", 4, seed=seed, nodes=2)
    return NodeSetup(2, rank, "127.0.0.1", port, "test", join_timeout_s).place([cell])[0]


def both(first: CellConfig, other: CellConfig) -> list:
    """Run the two nodes' exchanges at once; each one's addresses, or the exception it raised."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(exchange, first), pool.submit(exchange, other)]
        return [future.exception() or future.result() for future in futures]


def test_every_node_gets_every_address_in_node_rank_order():
    port = free_port()
    first, other = both(placed(0, port), placed(1, port))
    assert first == other and len(first) == 2 and len(set(first)) == 2
    for address in first:
        host, _, number = address.rpartition(":")
        assert host == "127.0.0.1" and 0 < int(number) < 65536
    config = tf_config(first, 1)
    assert config == {"cluster": {"worker": first}, "task": {"type": "worker", "index": 1}}


def test_nodes_with_different_options_are_refused_on_every_node():
    port = free_port()
    outcomes = both(placed(0, port), placed(1, port, seed=7))
    assert all(isinstance(outcome, MultiNodeError) and "nodes disagree" in str(outcome) for outcome in outcomes)


def test_a_node_that_never_comes_is_a_timeout_within_the_join_timeout():
    started = time.monotonic()
    config = placed(0, free_port(), join_timeout_s=1.5)
    with pytest.raises(JoinTimeout, match="not every node joined the rendezvous .* within 1.5 s") as caught:
        exchange(config)
    assert time.monotonic() - started < 15
    assert peer_lost(caught.value, config)  # the worker turns it into a timeout row


def test_the_advertised_address_is_the_one_that_reaches_the_rendezvous_host():
    host, _, port = own_address("127.0.0.1", free_port()).rpartition(":")
    assert host == "127.0.0.1"
    with socket.socket() as listener:
        listener.bind((host, int(port)))  # free when advertised
