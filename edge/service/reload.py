"""Reloads that do what they say: a config reload rebuilds every stage its changed sections feed and swaps
the pipeline in whole, or refuses with the reason; a roster change reloads the gallery only.

Both build on the jobs thread (see edge/jobs.py) and swap in the loop's thread, so the old matcher and
stages keep serving until the new ones are ready.
"""

from __future__ import annotations

import logging
from typing import Protocol

from edge.config import Config, ConfigError, load_config
from edge.jobs import JobFailed, Outcome
from edge.recognition.pipeline import Pipeline
from edge.service.assembly import (
    RELOADABLE_SECTIONS,
    RESTART_SECTIONS,
    build_matcher_for,
    load_gallery,
    rebuild_pipeline,
)
from edge.service.logs import apply_level

log = logging.getLogger(__name__)


class Running(Protocol):
    """What a reload reads and replaces (the daemon)."""

    config: Config
    pipeline: Pipeline


def changed_sections(old: Config, new: Config) -> list[str]:
    return [name for name in (*RESTART_SECTIONS, *RELOADABLE_SECTIONS) if getattr(old, name) != getattr(new, name)]


class Reloader:
    def __init__(self, running: Running):
        self.running = running

    def gallery(self) -> Outcome:
        """Re-read the gallery and build its matcher; the swap replaces only the matcher."""
        config, identifier = self.running.config, self.running.pipeline.identifier
        gallery = load_gallery(config, identifier.model_id, identifier.dim)
        matcher = build_matcher_for(config, gallery)

        def swap() -> None:
            self.running.pipeline.identifier.matcher = matcher
            log.info("gallery reloaded: %d people, version %d", gallery.people, gallery.version)

        return Outcome({"people": gallery.people, "roster_version": gallery.version}, swap)

    def config(self) -> Outcome:
        """Re-read the config file; rebuild what its reloadable sections feed, refuse restart-only changes."""
        old, current = self.running.config, self.running.pipeline
        if old.source_path is None:
            outcome = self.gallery()
            return Outcome({**outcome.result, "reloaded": []}, outcome.apply)
        try:
            new = load_config(old.source_path)
        except ConfigError as exc:
            raise JobFailed(f"config refused, the running one stays: {exc}") from None
        changed = changed_sections(old, new)
        needs_restart = [name for name in changed if name in RESTART_SECTIONS]
        if needs_restart:
            raise JobFailed(f"{', '.join(needs_restart)} changed in {old.source_path}; that takes a restart "
                            "(systemctl restart facecheck); nothing was reloaded")
        gallery = load_gallery(new, current.identifier.model_id, current.identifier.dim)
        try:
            pipeline = rebuild_pipeline(current, old, new, build_matcher_for(new, gallery))
        except Exception as exc:  # a stage the new settings cannot build (e.g. a missing gesture model)
            raise JobFailed(f"the new settings cannot be applied, the running ones stay: {exc}") from None

        def swap() -> None:
            self.running.config, self.running.pipeline = new, pipeline
            apply_level(new.log)
            log.info("config reloaded (%s); gallery: %d people, version %d",
                     ", ".join(changed) or "no section changed", gallery.people, gallery.version)

        return Outcome({"people": gallery.people, "roster_version": gallery.version, "reloaded": changed}, swap)
