"""Slow work beside the frame loop: enrolment, matcher rebuilds, config reloads, roster apply.

A job's `work` runs on one worker thread (jobs run one at a time, so gallery writes never race); what it
builds is swapped in by its `apply`, and its answer given by `done`, both in the loop's thread between
frames. The loop therefore never waits for a slow command, and the stages it uses change only there:
until a rebuilt matcher is ready the old one keeps serving.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import FaceCheckError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a job produced: the answer, and the swap that makes it take effect (None: nothing to swap)."""

    result: dict
    apply: Callable[[], None] | None = None


Work = Callable[[], Outcome]
Done = Callable[[dict], None]


class JobFailed(Exception):
    """A job refused its input; the message is the answer's error."""


def run_job(name: str, work: Work) -> Outcome:
    """Run one job and turn any failure into an {"ok": false} answer; a job never raises."""
    try:
        outcome = work()
        return Outcome({"ok": True, "error": None, **outcome.result}, outcome.apply)
    except (JobFailed, FaceCheckError) as exc:  # refused input (a bad photo, an unknown person): no traceback
        log.warning("%s refused: %s", name, exc)
        return Outcome({"ok": False, "error": str(exc)})
    except Exception as exc:  # a bad job must never take the daemon down
        log.exception("%s failed", name)
        return Outcome({"ok": False, "error": f"internal error: {exc}"})


class BackgroundJobs:
    """One worker thread, started on the first job; `pump()` from the loop applies finished jobs."""

    def __init__(self):
        self._todo: queue.Queue[tuple[str, Work, Done] | None] = queue.Queue()
        self._finished: queue.Queue[tuple[str, Outcome, Done]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._waiting = 0
        self._lock = threading.Lock()

    def submit(self, name: str, work: Work, done: Done) -> None:
        with self._lock:
            self._waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._worker, name="facecheck-jobs", daemon=True)
                self._thread.start()
        self._todo.put((name, work, done))

    def _worker(self) -> None:
        while (job := self._todo.get()) is not None:
            name, work, done = job
            self._finished.put((name, run_job(name, work), done))

    def pump(self) -> int:
        """Apply and answer every finished job (loop thread only); how many there were."""
        count = 0
        while True:
            try:
                name, outcome, done = self._finished.get_nowait()
            except queue.Empty:
                return count
            if outcome.apply is not None:
                try:
                    outcome.apply()
                except Exception as exc:
                    log.exception("%s could not be applied", name)
                    outcome = Outcome({"ok": False, "error": f"internal error while applying: {exc}"})
            with self._lock:
                self._waiting -= 1
            done(outcome.result)
            count += 1

    def busy(self) -> int:
        """Jobs submitted and not yet applied."""
        with self._lock:
            return self._waiting

    def finish(self, timeout: float) -> bool:
        """On shutdown: let queued jobs finish (up to timeout), apply and answer them; True if none is left."""
        import time

        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            self.pump()
            time.sleep(0.02)
        self._todo.put(None)
        return self.busy() == 0


class InlineJobs:
    """The same interface run at once, for one-shot callers (CLI tools, unit tests) that have no loop."""

    def submit(self, name: str, work: Work, done: Done) -> None:
        outcome = run_job(name, work)
        if outcome.apply is not None:
            outcome.apply()
        done(outcome.result)

    def pump(self) -> int:
        return 0

    def busy(self) -> int:
        return 0
