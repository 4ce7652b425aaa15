"""Where each node's worker listens, told to every node through a store the first node hosts.

TensorFlow's multi-worker runtime needs every worker's address before it starts (``TF_CONFIG``),
and a multi-node run is given only the first node's ``--rendezvous HOST:PORT``. So each node's
worker publishes its own address and the cell's key in a c10d ``TCPStore`` (the store torchrun's
rendezvous uses) that node 0 serves at that endpoint, waits for the other nodes, and reads the
whole list in node-rank order. Nodes whose keys differ are refused here, before TensorFlow starts.

The exchange runs in its own short process (``python -m benchmarks.address_exchange``), so the
measuring worker never imports torch: its peak memory is part of the results. It answers as every
child does (``benchmarks.process``): one ``RESULT`` line, with the addresses, or with the status
"timeout" (a node did not join in time) or "failed" (the nodes disagree, or the options cannot work).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import timedelta

from benchmarks.cell import CellConfig
from benchmarks.multinode import MultiNodeError, check_same_cell, parse_endpoint
from benchmarks.process import read_result, run_bounded, write_result

STARTUP_GRACE_S = 60.0  # the exchange process's own start-up (importing torch) beyond the join timeout


class JoinTimeout(TimeoutError):
    """Not every node joined the cell's rendezvous within the join timeout."""


def own_address(rendezvous_host: str, rendezvous_port: int) -> str:
    """``IP:PORT`` on which this node's worker can listen: the local address that routes to the
    rendezvous host (a connected UDP socket sends nothing; the kernel just picks the route), and a
    port free now. Another program may take the port before TensorFlow binds it; that fails the cell."""
    family, kind, _, _, where = socket.getaddrinfo(rendezvous_host, rendezvous_port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind) as probe:
        probe.connect(where)
        local = probe.getsockname()[0]
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((local, 0))
        port = listener.getsockname()[1]
    return f"[{local}]:{port}" if family == socket.AF_INET6 else f"{local}:{port}"


def exchange(config: CellConfig) -> list[str]:
    """Every node's worker address, in node-rank order; raises JoinTimeout or MultiNodeError."""
    from torch.distributed import DistError, TCPStore

    host, port = parse_endpoint(config.rendezvous)
    timeout = timedelta(seconds=config.join_timeout_s)
    first = config.node_rank == 0
    names = [f"{config.rdzv_id}/node{rank}" for rank in range(config.nodes)]
    try:
        store = TCPStore(host, port, is_master=first, timeout=timeout, wait_for_workers=False)
        entry = {"address": own_address(host, port), "key": config.key()}
        store.set(names[config.node_rank], json.dumps(entry))
        store.wait(names, timeout)
        entries = [json.loads(store.get(name)) for name in names]
        read = store.add(f"{config.rdzv_id}/read", 1)
    except DistError as error:
        if first and "in use" in str(error).lower():
            raise MultiNodeError(f"port {port} is in use: the rendezvous store cannot start there") from None
        raise JoinTimeout(_missing(config, error)) from None  # a node that never came, or node 0's store
    if first:
        _serve_until_read(store, f"{config.rdzv_id}/read", read, config)
    check_same_cell([entry["key"] for entry in entries], config)
    return [entry["address"] for entry in entries]


def _missing(config: CellConfig, error: Exception) -> str:
    return (
        f"not every node joined the rendezvous at {config.rendezvous} within {config.join_timeout_s:g} s "
        f"({config.nodes} nodes expected): timed out ({str(error).splitlines()[0][:200]})"
    )


def _serve_until_read(store, counter: str, read: int, config: CellConfig) -> None:
    """Node 0 serves the store: keep it up until every node has read the list (or the join timeout)."""
    deadline = time.monotonic() + config.join_timeout_s
    while read < config.nodes and time.monotonic() < deadline:
        time.sleep(0.05)
        read = store.add(counter, 0)


def cluster_addresses(config: CellConfig) -> list[str]:
    """Run the exchange in its own process (see the module's docstring); raise what it reports."""
    command = [sys.executable, "-m", "benchmarks.address_exchange", config.to_json()]
    ended = run_bounded(command, dict(os.environ), config.join_timeout_s + STARTUP_GRACE_S)
    if ended.returncode is None:
        raise JoinTimeout(f"the address exchange for {config.rendezvous} did not end; killed")
    result = read_result(ended.stdout)
    if result is None:
        last = (ended.stderr.strip().splitlines() or [f"exit code {ended.returncode}"])[-1]
        raise MultiNodeError(last)
    if result["status"] == "ok":
        return result["addresses"]
    raise (JoinTimeout if result["status"] == "timeout" else MultiNodeError)(result["error"])


def main(argv: list[str] | None = None) -> int:
    (text,) = argv if argv is not None else sys.argv[1:]
    config = CellConfig.from_dict(json.loads(text))
    try:
        result = {"status": "ok", "addresses": exchange(config)}
    except JoinTimeout as error:
        result = {"status": "timeout", "error": str(error)}
    except MultiNodeError as error:
        result = {"status": "failed", "error": str(error)}
    write_result(result)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
