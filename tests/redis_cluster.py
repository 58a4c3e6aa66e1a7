"""A private three-master Redis Cluster on loopback, for tests of Portico's Redis use on a cluster.

    with running_cluster(tmp_path) as cluster:
        RedisLimiter(cluster.url, prefix=..., cluster=True)

Each node keeps nothing on disk (`--save "" --appendonly no`) and runs as a
daemon; the cluster is formed with `redis-cli --cluster create` and is ready
once every node reports `cluster_state:ok`. Each node's cluster bus gets a
free port of its own (`--cluster-port`), since the default (port + 10000) may
lie past 65535 for an ephemeral port. Every node is shut down on the way out.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.servers import free_port

NODES = 3
READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class ClusterNodes:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """The seed node: what REDIS_URL names with PORTICO_REDIS_CLUSTER=true."""
        return self.node_url(0)

    def node_url(self, index: int) -> str:
        return f"redis://127.0.0.1:{self.ports[index]}/0"

    def node(self, index: int) -> redis.Redis:
        """A plain client of one node (close it when done)."""
        return redis.Redis.from_url(self.node_url(index), socket_timeout=2, socket_connect_timeout=2)

    def client(self) -> redis.RedisCluster:
        """A cluster client that finds each key's node (close it when done)."""
        return redis.RedisCluster.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)


@contextmanager
def running_cluster(directory: Path) -> Iterator[ClusterNodes]:
    ports = _distinct_free_ports(NODES * 2)
    nodes = ClusterNodes(tuple(ports[:NODES]))
    started: list[int] = []
    try:
        for port, bus in zip(nodes.ports, ports[NODES:], strict=True):
            _start_node(directory, port, bus)
            started.append(port)
        _create(directory, nodes)
        _wait_until_ok(directory, nodes)
        yield nodes
    finally:
        for port in started:
            _shut_down(directory, port)


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _start_node(directory: Path, port: int, bus: int) -> None:
    command = [
        "redis-server",
        "--port", str(port),
        "--cluster-port", str(bus),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "yes",
        "--dir", str(directory),
        "--pidfile", str(directory / f"redis-{port}.pid"),
        "--logfile", str(directory / f"redis-{port}.log"),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=10)  # noqa: S603
    deadline = time.monotonic() + READY_TIMEOUT
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
    finally:
        client.close()
    raise RuntimeError(f"redis-server on port {port} did not answer:\n{_log(directory, port)}")


def _create(directory: Path, nodes: ClusterNodes) -> None:
    addresses = [f"127.0.0.1:{port}" for port in nodes.ports]
    command = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")


def _wait_until_ok(directory: Path, nodes: ClusterNodes) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        states = []
        for index in range(NODES):
            client = nodes.node(index)
            try:
                states.append(client.execute_command("CLUSTER", "INFO"))
            finally:
                client.close()
        if all(b"cluster_state:ok" in state for state in states):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the cluster did not reach cluster_state:ok:\n{_log(directory, nodes.ports[0])}")


def _shut_down(directory: Path, port: int) -> None:
    # NOW: there are no replicas to wait for. The node closes the connection instead of answering.
    command = ["redis-cli", "-p", str(port), "shutdown", "nosave", "now"]
    subprocess.run(command, capture_output=True, timeout=10, check=False)  # noqa: S603
    pid_file = directory / f"redis-{port}.pid"
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _log(directory: Path, port: int) -> str:
    path = directory / f"redis-{port}.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
