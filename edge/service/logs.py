"""Logging set-up: plain text for terminals and journald, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import ClassVar

from edge.config import LogConfig


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body)


class JournalFormatter(logging.Formatter):
    """sd-daemon priority prefixes (<3> error ... <7> debug) so journald keeps the level."""

    _PRIORITY: ClassVar[dict[int, int]] = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                                           logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self._PRIORITY.get(record.levelno, 6)}>"
        return prefix + f"{record.name}: {record.getMessage()}" + (
            "\n" + self.formatException(record.exc_info) if record.exc_info else "")


class RepeatFilter(logging.Filter):
    """Lets an identical warning or error through at most once per interval (journald stays readable)."""

    def __init__(self, interval_s: float = 30.0):
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.interval_s:
            return False
        self._last[key] = now
        return True


def setup_logging(config: LogConfig, env: dict[str, str] | None = None) -> None:
    env = dict(os.environ if env is None else env)
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    elif env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"):
        # Under systemd: journald stamps the time and unit itself; a <N> prefix sets the priority.
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    apply_level(config)


def apply_level(config: LogConfig) -> None:
    logging.getLogger().setLevel(config.level.upper())
