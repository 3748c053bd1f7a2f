"""Learning from confirmed visits: a door adds the fused embedding of a visit it checked in to that person's templates.

Enrolment photos are taken elsewhere (a phone, an ID photo, another light); the door sees its own camera, angle and
light. A visit it is sure of is the best template for the next one. What makes it safe, each guard a setting under
`adaptation`:

- only a **check-in**: a gesture confirmed it, or, without one, the track was embedded in `min_frames` frames;
- judged **live** where the anti-spoofing models are installed (policy on): a photo held up is never learned;
- the visit must lie within `within` of the threshold of the person's **enrolled** template, with the next
  person's enrolled template `min_margin` farther. Learned templates never vouch for a visit, so learning cannot
  chain: every learned template is close to the person's own photos, and a look-alike who is not already accepted
  by the enrolled photos is never learned however often they come (tests/test_adaptation.py);
- a good frame (`min_quality`), and something new (farther than `novel_beyond` from every template of theirs);
- at most `max_per_person` learned templates (the oldest leave; enrolled ones never do). They count when a face is
  matched, never when the threshold is set (the roster's bound reads enrolled photos only).

The rule is a pure function of the matcher, the decision and the track; the daemon persists the gallery and
publishes the audit record off the inference loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.config import AdaptationConfig
from edge.events import Decision
from edge.identity.matcher import Matcher
from edge.identity.operating import similarity_distance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Learned:
    """A template the door learned: what the audit record says."""

    person_id: str
    name: str
    distance: float  # to the person's enrolled template
    margin: float  # how much farther the next person's enrolled template lies
    templates: int  # learned templates the person now holds
    evicted: int  # older learned templates that left to make room
    track_id: int | None
    model_id: str
    vector: np.ndarray  # the template, for the copy on disk
    at: float  # unix seconds
    liveness: dict | None  # the check-in's liveness evidence (the visit was judged on it)

    def audit(self) -> Decision:
        """The template_added event: an audit record on the events topic, durable like every event."""
        template = {"distance": round(self.distance, 4),
                    "margin": round(self.margin, 4) if np.isfinite(self.margin) else None,
                    "templates": self.templates, "evicted": self.evicted, "model_id": self.model_id}
        extra = {"track_id": self.track_id, "liveness": self.liveness, "template": template}
        return Decision("template_added", self.person_id, self.name,
                        extra={key: value for key, value in extra.items() if value is not None})


def refusal(config: AdaptationConfig, matcher: Matcher, decision: Decision, fused: np.ndarray, best_quality: float,
            frames: int, liveness_on: bool) -> tuple[str | None, float, float]:
    """(why this visit is not learned, or None; distance to the person's enrolled template; margin): every
    guard of the module docstring, in one place."""
    if not config.enabled:
        return "adaptation.enabled is false", 0.0, 0.0
    if decision.type != "check_in" or decision.person_id not in matcher.gallery.person_ids:
        return f"a {decision.type} event, not a check-in", 0.0, 0.0
    verdict = (decision.extra.get("liveness") or {}).get("verdict")
    if liveness_on and verdict != "live":
        return f"liveness verdict {verdict!r}, not 'live'", 0.0, 0.0
    if decision.gesture != "confirm" and frames < config.min_frames:
        return f"seen in {frames} frames, without a confirming gesture (adaptation.min_frames {config.min_frames})", 0.0, 0.0
    if best_quality < config.min_quality:
        return f"best frame quality {best_quality:.2f} < adaptation.min_quality {config.min_quality}", 0.0, 0.0
    person = matcher.gallery.person_ids.index(decision.person_id)
    distances = matcher.enrolled_distances(fused)
    distance = float(distances[person])
    others = np.delete(distances, person)
    margin = float(others.min() - distance) if len(others) else float("inf")
    bound = config.within * matcher.threshold
    if distance > bound:
        return f"{distance:.3f} from the enrolled template > {bound:.3f} (adaptation.within x threshold)", distance, margin
    if margin < config.min_margin:
        return f"the next person is only {margin:.3f} farther (adaptation.min_margin {config.min_margin})", distance, margin
    gallery = matcher.gallery
    learned, labels = gallery.adapted_templates()
    own = np.concatenate([gallery.embeddings[gallery.original & (gallery.labels == person)], learned[labels == person]])
    nearest = float(similarity_distance(float(np.max(own @ fused)))) if len(own) else 2.0
    if nearest <= config.novel_beyond:
        return (f"{nearest:.3f} from one of their templates: nothing new (adaptation.novel_beyond "
                f"{config.novel_beyond})", distance, margin)
    return None, distance, margin


def learn(config: AdaptationConfig, matcher: Matcher, decision: Decision, fused: np.ndarray, best_quality: float,
          frames: int, liveness_on: bool, at: float) -> Learned | None:
    """Add the visit's fused embedding to the person's learned templates if every guard passes; the matcher sees it
    from the next face on. None (and a debug line saying why) otherwise."""
    why, distance, margin = refusal(config, matcher, decision, fused, best_quality, frames, liveness_on)
    gallery = matcher.gallery
    if why is not None:
        log.debug("visit of %s not learned: %s", decision.name, why)
        return None
    person_id = decision.person_id or ""
    evicted = gallery.adapt(person_id, fused, at, config.max_per_person)
    matcher.templates_changed()
    learned = Learned(person_id, decision.name or "", distance, margin, gallery.adapted_counts()[person_id], evicted,
                      decision.extra.get("track_id"), gallery.model_id, np.asarray(fused, np.float32), at,
                      decision.extra.get("liveness"))
    log.info("learned a template of %s from this visit (%.3f from their enrolled template; %d learned)",
             decision.name, distance, learned.templates)
    return learned
