"""A three-node RabbitMQ cluster on loopback, from Debian's `rabbitmq-server` package: for the cluster tests
and `bench.faults --only cluster`. Never the system service: every node has its own name, ports, folders,
cookie and a private epmd, and forms the cluster itself (classic_config peer discovery, no join step).

MQTT sessions are quorum queues (`mqtt.durable_queue_type = quorum`): with the default classic queues a
subscriber whose queue lived on a killed node silently loses messages its publishers were PUBACKed for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edge.cli.local_broker import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's /usr/sbin wrapper switches user
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"
INSTALL_HINT = "Debian's rabbitmq-server is not installed (scripts/test installs it: apt-get install rabbitmq-server)"


class ClusterUnavailable(Exception):
    pass


def gone_within(proc: subprocess.Popen | None, timeout: float) -> None:
    """Wait until every process of proc's group has exited: the shell that started beam exits first, and a
    beam still dying keeps its ports open (a restart would then seem to be up at once)."""
    if proc is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise ClusterUnavailable(f"process group {proc.pid} still alive {timeout:.0f}s after kill -9")


def rabbitmq_installed() -> bool:
    return SERVER.exists() and CTL.exists() and shutil.which("epmd") is not None


@dataclass
class Node:
    index: int
    amqp_port: int
    mqtt_port: int
    dist_port: int
    proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"rabbit{self.index}@localhost"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RabbitCluster:
    """Three nodes started together; kill(i) is kill -9 of a node, start(i) brings it back on its old data."""

    def __init__(self, workdir: Path, nodes: int = 3):
        if not rabbitmq_installed():
            raise ClusterUnavailable(INSTALL_HINT)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cookie = workdir / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.nodes = [Node(i, free_port(), free_port(), free_port()) for i in range(1, nodes + 1)]
        self.epmd: subprocess.Popen | None = None
        for node in self.nodes:
            self._write_config(node)

    def _folder(self, node: Node) -> Path:
        return self.workdir / f"rabbit{node.index}"

    def _write_config(self, node: Node) -> None:
        folder = self._folder(node)
        folder.mkdir(exist_ok=True)
        peers = "".join(f"cluster_formation.classic_config.nodes.{n.index} = {n.name}\n" for n in self.nodes)
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.durable_queue_type = quorum\n"
            "cluster_formation.peer_discovery_backend = classic_config\n" + peers +
            "log.console = false\nlog.file.level = warning\n")
        (folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (folder / "rabbitmq-env.conf").write_text("")

    def env(self, node: Node) -> dict[str, str]:
        folder = self._folder(node)
        return dict(
            os.environ, HOME=str(self.workdir), RABBITMQ_NODENAME=node.name, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node.amqp_port), RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_MNESIA_BASE=str(folder / "mnesia"), RABBITMQ_LOG_BASE=str(folder / "log"),
            RABBITMQ_CONFIG_FILE=str(folder / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(folder / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(folder / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(folder / "rabbit.pid"), RABBITMQ_CONF_ENV_FILE=str(folder / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1", ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=LOOPBACK_DIST, RABBITMQ_CTL_ERL_ARGS=LOOPBACK_DIST)

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(CTL), "-n", node.name, *args], env=self.env(node), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *indexes: int, timeout: float = 180) -> RabbitCluster:
        """Start the given nodes (all when none is given) and wait until each accepts MQTT."""
        if self.epmd is None:
            # A private epmd in its own session: one a node started would die with that node's kill -9.
            self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                         start_new_session=True, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=str(self.workdir)))
        deadline = time.monotonic() + timeout
        if indexes:
            self._launch([self.nodes[i] for i in indexes], deadline, timeout)
        else:
            # The first node alone, then the others: started together, a node can end up outside the MQTT
            # plugin's client-id tracker (every CONNECT then "Server unavailable", "client ID registration
            # timed out" in its log; 1 start in 9 here) although the cluster itself formed.
            self._launch(self.nodes[:1], deadline, timeout)
            self._launch(self.nodes[1:], deadline, timeout)
        return self

    def _launch(self, nodes: list[Node], deadline: float, timeout: float) -> None:
        for node in nodes:
            log = open(self._folder(node) / "stdout.log", "ab")
            node.proc = subprocess.Popen([str(SERVER)], env=self.env(node), stdout=log, stderr=log,
                                         start_new_session=True)
        for node in nodes:
            while not self._accepts_mqtt(node):
                if not node.alive():
                    raise ClusterUnavailable(f"{node.name} exited while starting: {self.log_tail(node)}")
                if time.monotonic() > deadline:
                    raise ClusterUnavailable(f"{node.name} did not accept MQTT within {timeout:.0f}s: "
                                             f"{self.log_tail(node)}")
                time.sleep(0.2)

    def _accepts_mqtt(self, node: Node) -> bool:
        """An MQTT 3.1.1 CONNECT answered with a CONNACK that accepts: an open port is not enough, a node
        listens before it takes clients (a roster publish right after start missed a node that way)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ready-check-{node.index}",
                             protocol=mqtt.MQTTv311)
        answers: list[bool] = []
        client.on_connect = lambda _c, _u, _f, reason_code, _p: answers.append(not reason_code.is_failure)
        try:
            client.connect("127.0.0.1", node.mqtt_port, keepalive=5)
            deadline = time.monotonic() + 3
            while not answers and time.monotonic() < deadline:
                client.loop(timeout=0.1)
        except OSError:
            return False
        finally:
            client.disconnect()
        return answers == [True]

    def running_nodes(self) -> list[str]:
        """The cluster's running members as one live node sees them."""
        for node in self.nodes:
            if node.alive():
                out = self.ctl(node, "eval", "rabbit_nodes:all_running().", timeout=30)
                if out.returncode == 0:
                    return sorted(out.stdout.strip().strip("[]").replace("'", "").split(","))
        return []

    def wait_formed(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        want = sorted(n.name for n in self.nodes if n.alive())
        while self.running_nodes() != want:
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"the cluster did not form: running {self.running_nodes()}, want {want}")
            time.sleep(0.5)

    def log_tail(self, node: Node, lines: int = 15) -> str:
        texts = []
        for path in sorted((self._folder(node) / "log").glob("*.log")) + [self._folder(node) / "stdout.log"]:
            if path.exists():
                texts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts[-lines:])

    def kill(self, index: int) -> None:
        """kill -9 of the node's whole process group (erl, beam and its helpers), as a power cut would."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
        gone_within(node.proc, 10)

    def close(self) -> None:
        for i in range(len(self.nodes)):
            self.kill(i)
        if self.epmd is not None and self.epmd.poll() is None:
            os.killpg(self.epmd.pid, signal.SIGKILL)
            self.epmd.wait(10)
            gone_within(self.epmd, 10)
