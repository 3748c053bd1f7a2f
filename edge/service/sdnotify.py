"""systemd's notify protocol in a few lines: READY, STATUS, WATCHDOG and STOPPING over $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams when run by systemd (NOTIFY_SOCKET set); a no-op otherwise."""

    def __init__(self, env: dict[str, str] | None = None):
        env = dict(os.environ if env is None else env)
        address = env.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        watchdog = usec is not None and usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 1e6 if usec is not None and watchdog else None
        self._last_ping = 0.0
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if address else None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str) -> None:
        if self._socket is None or self.address is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: flushing events")

    def frame_processed(self, now: float | None = None) -> None:
        """Pet the watchdog at half its interval; called only after a frame went through the pipeline."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval_s / 2:
            self._last_ping = now
            self.send("WATCHDOG=1")
