"""Several machines, one cell: the options of a multi-node run, from the command line or SLURM.

One ``bench.py run`` runs on each node with the same options. For each cell, every node starts
its framework's own distributed launcher (torchrun with a c10d rendezvous at the first node's
HOST:PORT; TensorFlow's multi-worker runtime from a ``TF_CONFIG``); the processes meet there,
compare the cell's key (a hash of its configuration) and refuse to run different cells. Only the
first node's local rank 0 reports, so only the first node writes rows; the others only take part.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from benchmarks.cell import CellConfig

DEFAULT_PORT = 29500  # torchrun's own default
DEFAULT_RDZV_ID = "alexnet-bench"


class MultiNodeError(ValueError):
    """Multi-node options that cannot work; the message says which and why."""


@dataclass(frozen=True)
class NodeSetup:
    """Where this node stands in a multi-node run."""

    nodes: int = 1
    node_rank: int = 0
    host: str = ""
    port: int = DEFAULT_PORT
    rdzv_id: str = DEFAULT_RDZV_ID
    join_timeout_s: float = 300.0

    @property
    def first(self) -> bool:
        return self.node_rank == 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def place(self, cells: list[CellConfig]) -> list[CellConfig]:
        """The cells with where to meet; the i-th cell of every node gets the i-th rendezvous id.

        A fresh id per cell keeps a slow node from joining the previous cell's rendezvous; the same
        position on every node makes nodes with different options meet, compare keys and refuse.
        """
        if self.nodes == 1:
            return cells
        return [
            replace(
                cell,
                node_rank=self.node_rank,
                rendezvous=self.endpoint,
                rdzv_id=f"{self.rdzv_id}-{index}",
                join_timeout_s=self.join_timeout_s,
            )
            for index, cell in enumerate(cells)
        ]


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too), or a one-line error."""
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d+)", text.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise MultiNodeError(f"--rendezvous takes HOST:PORT with a port from 1 to 65535, got {text!r}")
    return match.group(1), int(match.group(2))


def nodelist_hosts(text: str) -> Iterator[str]:
    """Host names of a SLURM node list, one at a time: ``a,b``, ``node[01-04]``, ``gpu[1,3-4],cpu7``.

    Lazy: ``node[1-999999999]`` names a billion hosts, and a node needs only the first.
    """
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?", text):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            yield prefix
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise MultiNodeError(f"cannot read the SLURM node list {text[:200]!r}")
            for number in range(int(low), int(high or low) + 1):
                yield f"{prefix}{number:0{len(low)}d}"


def expand_nodelist(text: str) -> list[str]:
    return list(nodelist_hosts(text))


def first_host(text: str) -> str:
    """The first host of a SLURM node list (the rendezvous host), without expanding the rest."""
    host = next(nodelist_hosts(text.strip()), None)
    if not host:
        raise MultiNodeError("SLURM_JOB_NODELIST is empty: no host to meet at; give --rendezvous HOST:PORT")
    return host


def _slurm_number(env: Mapping[str, str], name: str, default: str) -> int:
    value = env.get(name, default) or default
    try:
        return int(value)
    except ValueError:
        raise MultiNodeError(f"{name} must be a whole number, got {value[:100]!r}") from None


def node_setup(
    env: Mapping[str, str],
    nodes: int | None = None,
    rendezvous: str | None = None,
    node_rank: int | None = None,
    rdzv_id: str | None = None,
    join_timeout_s: float = 300.0,
) -> NodeSetup:
    """This node's setup: the options given, else SLURM's (``SLURM_NNODES``, ``SLURM_PROCID``,
    the first host of ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``), else one node."""
    slurm = _slurm_number(env, "SLURM_NNODES", "1") > 1 and "SLURM_JOB_NODELIST" in env
    if nodes is None:
        nodes = _slurm_number(env, "SLURM_NNODES", "1") if slurm else 1
    if nodes < 1:
        raise MultiNodeError(f"--nodes must be at least 1, got {nodes}")
    if nodes == 1:
        if rendezvous or node_rank:
            raise MultiNodeError("--rendezvous and --node-rank are for --nodes 2 or more")
        return NodeSetup()
    if node_rank is None:
        node_rank = _slurm_number(env, "SLURM_PROCID", "0") if slurm and "SLURM_PROCID" in env else None
    if node_rank is None:
        raise MultiNodeError("--nodes needs --node-rank R on each node (0 on the first), or SLURM's SLURM_PROCID")
    if not 0 <= node_rank < nodes:
        raise MultiNodeError(f"--node-rank must be from 0 to {nodes - 1} with --nodes {nodes}, got {node_rank}")
    if rendezvous:
        host, port = parse_endpoint(rendezvous)
    elif slurm:
        host, port = first_host(env["SLURM_JOB_NODELIST"]), DEFAULT_PORT
    else:
        raise MultiNodeError("--nodes needs --rendezvous HOST:PORT (the first node's address), or a SLURM job")
    if not join_timeout_s > 0:
        raise MultiNodeError(f"--join-timeout must be a positive number of seconds, got {join_timeout_s:g}")
    run_id = rdzv_id or (f"slurm-{env['SLURM_JOB_ID']}" if slurm and env.get("SLURM_JOB_ID") else DEFAULT_RDZV_ID)
    return NodeSetup(nodes, node_rank, host, port, run_id, join_timeout_s)


def check_port_free(setup: NodeSetup) -> None:
    """On the first node, fail before the sweep when the rendezvous port is taken (it hosts the store there)."""
    if setup.nodes == 1 or not setup.first:
        return
    with socket.socket(socket.AF_INET6 if ":" in setup.host else socket.AF_INET) as probe:
        try:
            probe.bind((setup.host, setup.port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise MultiNodeError(
                    f"port {setup.port} on {setup.host} is in use: give a free one with --rendezvous {setup.host}:PORT"
                ) from None
            raise MultiNodeError(
                f"cannot listen on {setup.endpoint} for the rendezvous: {error.strerror or error}; "
                "run node rank 0 on the --rendezvous host"
            ) from None


def is_reporter(config: CellConfig, env: Mapping[str, str]) -> bool:
    """Whether this process prints the cell's result: local rank 0 of the first node when multi-node
    (a rendezvous numbers nodes in its own order, so global rank 0 may sit on another node), else rank 0."""
    if config.nodes > 1:
        return config.node_rank == 0 and int(env.get("LOCAL_RANK", "0")) == 0
    return int(env.get("RANK", "0")) == 0


def topology(config: CellConfig, env: Mapping[str, str]) -> dict:
    """What a row records of a distributed cell: nodes, processes per node and world size (the replicas that
    train in sync). torchrun starts one process per device and says so (``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``);
    TensorFlow's multi-worker runtime drives all of a node's devices from one process."""
    return {
        "nodes": config.nodes,
        "processes_per_node": int(env.get("LOCAL_WORLD_SIZE", 1)),
        "world_size": int(env.get("WORLD_SIZE", config.devices)),
    }


def check_same_cell(keys: list[str], config: CellConfig) -> None:
    """Refuse to measure when the processes of one rendezvous were started with different options."""
    if len(set(keys)) > 1:
        ranks = ", ".join(f"rank {rank}: {key}" for rank, key in enumerate(keys))
        raise MultiNodeError(
            f"nodes disagree on the cell (keys {ranks}); start every node with the same options "
            f"(this node: {config.label()})"
        )


# gloo's words for a vanished peer, and TensorFlow's (gRPC UNAVAILABLE, a collective past its deadline).
PEER_LOST_MARKERS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out",
                     "unavailableerror", "deadlineexceedederror")  # fmt: skip


def peer_lost(error: BaseException, config: CellConfig) -> bool:
    """Whether a multi-node cell failed because another node died or stopped answering."""
    text = f"{type(error).__name__} {error}".lower()
    return config.nodes > 1 and (isinstance(error, TimeoutError) or any(marker in text for marker in PEER_LOST_MARKERS))
