"""A private mosquitto on a loopback port: for the demo, the tests and the benchmarks.

Debian's `mosquitto` binary, started with its own config, persistence folder and port; never the
system service.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class BrokerUnavailable(Exception):
    pass


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root mosquitto would drop to user "mosquitto", which cannot write the persistence file here.
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            + (extra_conf or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerUnavailable("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise BrokerUnavailable(f"mosquitto exited: {error}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise BrokerUnavailable("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
