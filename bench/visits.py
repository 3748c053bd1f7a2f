"""Recognition judged per visit, per population: of the visits of enrolled people, how many are checked in as
themselves within 2 s, how many are named as somebody else; of strangers' visits, how many are checked in.

    python -m bench.visits [--rounds 10] [--k 5]
        [--models facenet-keras-int8full,mobilefacenet-float32,facenet-keras-int8full+mobilefacenet-float32]

A visit is simulated from labelled photos (no video of these people exists): VISIT_PHOTOS photos of one person,
each cut around its face (head and shoulders, the face 170 px, as the demo clip shows its visitors) and held in
the doorway for FRAMES_PER_PHOTO frames at 10 fps (jittered a few pixels), so a visit lasts 2 s; then an empty
doorway. Photos taken on different days vary far more than the frames of one real visit, so this is a hard
visit. Every visit runs through the door's own pipeline (detector, tracker, alignment, embedder, track fusion,
matcher with its threshold and the roster's bound, confirmation with require_gesture false and liveness off), one
fresh pipeline per round over a gallery enrolled through the real enrolment path.

Each round draws ENROLLED people to enrol (k photos each, picked at random) and STRANGERS from the rest; every
other photo of theirs, in random order, is cut into visits (at most MAX_VISITS per enrolled person, so every photo
they have left, and MAX_STRANGER_VISITS per stranger); no photo appears in two visits. The visits are shuffled into
one stream (a time order over everybody) and replayed twice, with learning from confirmed visits off and on
(edge/recognition/adaptation.py, the shipped settings): the same frames, the same order. "Later visits" are each
enrolled person's second and later ones, which learning can help. Templates learned during a stranger's visit, or
named as someone else, are counted apart (the poisoning the guards must prevent). Per population, never pooled: the
Western accuracy photos and, where the shared data folder is beside the project, the East Asian face crops. First,
the one door clip whose people are known (the demo's, rendered from sample photos) played twice, learning off and
on. At the matcher, face_recognition (dlib) runs beside the product on the same rounds (no learning). Writes
bench/results/visits.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.accuracy import FACE_RECOGNITION_TOLERANCE, face_recognition_identify, populations, strict_tolerance
from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, smoke_mode_on, write

VISIT_PHOTOS = 4
FRAMES_PER_PHOTO = 5
EMPTY_FRAMES = 8
FPS = 10.0
WITHIN_S = 2.0
ENROLLED, STRANGERS = 7, 7
MAX_VISITS, MAX_STRANGER_VISITS = 6, 3
AUGMENTATIONS = 20  # enrolment variants per photo at the matcher (the config's default)
SCALE_ROUNDS_SMOKE = 20  # per person per round: every photo an enrolled person has left, a few of a stranger's


def visit_frames(crops: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    from edge.cli.demo import doorway, in_doorway

    frames = [in_doorway(crop, rng) for crop in crops for _ in range(FRAMES_PER_PHOTO)]
    return frames + [doorway() for _ in range(EMPTY_FRAMES)]


def one_round(parts: tuple[Path, ...], by_person: dict[str, list], crops: dict, k: int, rng: np.random.Generator,
              work: Path, tracking: dict | None = None, max_visits: int = MAX_VISITS) -> dict[str, dict]:
    """One round's stream of visits, replayed twice through fresh pipelines over the same enrolled gallery: with the
    door learning from its confirmed visits off, then on. Returns {"off": counts, "on": counts}."""
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    eligible = [p for p, photos in by_person.items() if len(photos) > k]
    enrolled = list(rng.permutation(eligible)[:ENROLLED])
    others = [p for p in by_person if p not in enrolled]
    strangers = list(rng.permutation(others)[:STRANGERS]) if others else []
    settings = {**door_settings(parts, work / "gallery.npz"), **({"tracking": tracking} if tracking else {})}
    config = config_from_dict(settings, ROOT)
    for path in (work / "gallery.npz", work / "gallery.key"):
        path.unlink(missing_ok=True)
    identifier = build_identifier(config, with_matcher=False)
    visits: list[tuple[str, bool, list]] = []
    for person in enrolled + strangers:
        photos = [by_person[person][i] for i in rng.permutation(len(by_person[person]))]
        if person in enrolled:
            enrol(identifier, GalleryFile.from_config(config), person, photos[:k], None, config.matcher.augmentations,
                  force=True)
            photos = photos[k:]
        usable = [p for p in photos if crops.get(p) is not None]
        most = max_visits if person in enrolled else min(max_visits, MAX_STRANGER_VISITS)
        for start in range(0, min(len(usable), most * VISIT_PHOTOS), VISIT_PHOTOS):
            group = usable[start:start + VISIT_PHOTOS]
            if len(group) == VISIT_PHOTOS:
                visits.append((person, person in enrolled, group))
    visits = [visits[i] for i in rng.permutation(len(visits))]  # the stream: everybody's visits in one time order
    seed = int(rng.integers(2**31))
    return {mode: replay(config_from_dict({**settings, "adaptation": {"enabled": mode == "on"}}, ROOT), visits, crops,
                         np.random.default_rng(seed))
            for mode in ("off", "on")}


def door_settings(parts: tuple[Path, ...], gallery: Path) -> dict:
    """The door every visit runs through: this embedder (several: fused, embedder.fuse_with) and gallery, confirmation
    without a gesture, liveness off."""
    embedder = {"model": str(parts[0]), "fuse_with": [str(p) for p in parts[1:]]}
    return {"embedder": embedder, "matcher": {"gallery": str(gallery)}, "liveness": {"policy": "off"},
            "mqtt": {"enabled": False},
            "confirmation": {"require_gesture": False, "unknown_interval_s": 0, "cooldown_s": 0}}


def tally(counts: dict, who: str | None, names: list[tuple[str | None, float]]) -> bool:
    """One visit's verdict into counts: who (None: a stranger) and the check-ins it gave, (name, seconds into the
    visit). Returns whether an enrolled person was recognised within WITHIN_S."""
    if who is None:
        counts["stranger_visits"] += 1
        counts["strangers_checked_in"] += bool(names)
        return False
    recognised = any(n == who and t <= WITHIN_S for n, t in names)
    counts["visits"] += 1
    counts["recognised_within_2s"] += recognised
    counts["named_wrongly"] += any(n != who for n, _ in names)
    return recognised


def replay(config, visits: list[tuple[str, bool, list]], crops: dict, rng: np.random.Generator) -> dict:
    """The visits, in order, through one fresh pipeline; counts per visit, and what the door learned (a template
    learned during a stranger's visit is counted apart: the poisoning the guards must prevent)."""
    from edge.camera import Frame
    from edge.service.assembly import build_pipeline

    pipeline = build_pipeline(config)
    counts = {"visits": 0, "recognised_within_2s": 0, "named_wrongly": 0, "stranger_visits": 0,
              "strangers_checked_in": 0, "later_visits": 0, "later_recognised_within_2s": 0,
              "templates_learned": 0, "learned_from_strangers": 0, "learned_as_someone_else": 0}
    seen: dict[str, int] = {}
    index = 0
    for person, is_enrolled, group in visits:
        start_ts = index / FPS
        names, learned = [], []
        for image in visit_frames([crops[p] for p in group], rng):
            result = pipeline.process(Frame(image, index / FPS, index, "visits"))
            names += [(d.name, result.ts - start_ts) for d in result.decisions if d.type == "check_in"]
            learned += [item.name for item in result.learned]
            index += 1
        counts["templates_learned"] += len(learned)
        counts["learned_from_strangers"] += len(learned) * (not is_enrolled)
        counts["learned_as_someone_else"] += sum(name != person for name in learned) * is_enrolled
        recognised = tally(counts, person if is_enrolled else None, names)
        if is_enrolled:
            nth = seen.get(person, 0) + 1  # the person's how-many-th visit in the stream
            if nth > 1:  # second and later visits: what learning can help
                counts["later_visits"] += 1
                counts["later_recognised_within_2s"] += recognised
            counts[f"visit {nth} recognised"] = counts.get(f"visit {nth} recognised", 0) + recognised
            counts[f"visit {nth} of"] = counts.get(f"visit {nth} of", 0) + 1
            seen[person] = nth
    return counts


def door_clip(parts: tuple[Path, ...], work: Path, passes: int = 2) -> dict[str, dict]:
    """The one door clip whose people are known: the demo's (edge/cli/demo.py: Obama in a photo he was not enrolled
    with, Biden in his enrolment photo, two strangers, each 1.5 s in the doorway), played `passes` times in a row
    through fresh pipelines with learning off and on; it is rendered from photos, not filmed."""
    from edge.camera import Frame
    from edge.cli.demo import EMPTY_FRAMES as GAP
    from edge.cli.demo import ENROL, FRAMES_PER_VISIT, VISITORS, clip_frames
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.samples import sample
    from edge.service.assembly import build_identifier, build_pipeline

    settings = door_settings(parts, work / "clip-gallery.npz")
    config = config_from_dict(settings, ROOT)
    for path in (work / "clip-gallery.npz", work / "clip-gallery.key"):
        path.unlink(missing_ok=True)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in ENROL.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None,
              config.matcher.augmentations)
    frames = list(clip_frames()) * passes
    out = {}
    for mode in ("off", "on"):
        pipeline = build_pipeline(config_from_dict({**settings, "adaptation": {"enabled": mode == "on"}}, ROOT))
        counts = dict.fromkeys(("visits", "recognised_within_2s", "named_wrongly", "stranger_visits",
                                "strangers_checked_in", "templates_learned"), 0)
        names: list[list] = [[] for _ in range(len(VISITORS) * passes)]
        for index, image in enumerate(frames):
            result = pipeline.process(Frame(image, index / FPS, index, "door clip"))
            visit, offset = divmod(index, FRAMES_PER_VISIT + GAP)
            names[visit] += [(d.name, offset / FPS) for d in result.decisions if d.type == "check_in"]
            counts["templates_learned"] += len(result.learned)
        for visit, seen in enumerate(names):
            tally(counts, VISITORS[visit % len(VISITORS)][1], seen)
        out[mode] = counts
    return out


def face_crops(photos) -> dict:
    """Each photo's largest face cut as a visitor (None where no face is found, as a door would miss it). The photo is
    first extended by its own edge pixels, as enrolment searches a tight photo, so a tight face crop (the East Asian
    set's) does not become a hard-edged cut-out glued to the bottom of the frame, which no door camera shows: that
    cut-out moved the door's embedding of a photo 0.45 (MobileFaceNet, median) from the photo's own, 0.10 extended."""
    import cv2

    from bench.accuracy import detect_largest
    from edge.cli.demo import VISITOR_BELOW, visitor_crop

    crops: dict = {}
    for photo, (image, face) in zip(photos, detect_largest(photos, pad=True)):
        if face is None:
            crops[photo.path] = None
            continue
        reach = int(np.ceil(VISITOR_BELOW * max(face.box[2], face.box[3])))
        extended = cv2.copyMakeBorder(image, reach, reach, reach, reach, cv2.BORDER_REPLICATE)
        crops[photo.path] = visitor_crop(extended, face.moved(-reach, -reach).box)
    return crops


def scale_rounds(by_person: dict[str, list[int]], k: int, rounds: int, seed: int):
    """The rounds of the matcher's test, the same for every system given the same faces: each round enrols ENROLLED
    people with k photos each and takes everyone else as strangers; every group of VISIT_PHOTOS photos not enrolled
    is one visit. Yields (the enrolled people, {person: enrolled photo indices}, [(person, visit's photo indices)] in
    a random time order)."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        eligible = [person for person, indices in by_person.items() if len(indices) > k]
        chosen = set(rng.permutation(eligible)[:ENROLLED])
        enrolled, visits = {}, []
        for person, indices in by_person.items():
            order = [int(i) for i in rng.permutation(indices)]
            if person in chosen:
                enrolled[person], order = order[:k], order[k:]
            visits += [(person, order[i:i + VISIT_PHOTOS]) for i in range(0, len(order) - VISIT_PHOTOS + 1,
                                                                            VISIT_PHOTOS)]
        yield chosen, enrolled, [visits[i] for i in rng.permutation(len(visits))]


TAKEN_SHOWN = 8  # the commonest "who was taken for whom" pairs printed (the JSON keeps them all)
SCALE_KEYS = ("visits", "recognised", "third_on", "third_on_recognised", "named_wrongly", "stranger_visits",
              "strangers_accepted", "templates_learned")


def faces_by_person(photos: list, vectors: list) -> dict[str, list[int]]:
    """Each person's photos (indices) in which the system found a face."""
    by_person: dict[str, list[int]] = {}
    for i, photo in enumerate(photos):
        if vectors[i] is not None:
            by_person.setdefault(photo.person, []).append(i)
    return by_person


def count_visit(c: dict, seen: dict[str, int], chosen: set, person: str, answer: str | None) -> None:
    """One visit's outcome into the counts c (SCALE_KEYS and taken_for); seen: visits so far per enrolled person."""
    if person in chosen:
        seen[person] = nth = seen.get(person, 0) + 1
        c["visits"] += 1
        c["recognised"] += answer == person
        c["third_on"] += nth >= 3
        c["third_on_recognised"] += nth >= 3 and answer == person
        c["named_wrongly"] += answer is not None and answer != person
    else:
        c["stranger_visits"] += 1
        c["strangers_accepted"] += answer is not None
    if answer is not None and answer != person:
        taken = f"{person} as {answer}"
        c["taken_for"][taken] = c["taken_for"].get(taken, 0) + 1


def at_scale(parts: tuple[Path, ...], photos: list, views: dict, k: int, rounds: int, seed: int = 7) -> dict:
    """Stranger visits by the thousand, at the matcher: the stream above holds too few to bound a rate of 0.1 %. Each
    round (scale_rounds) enrols its people through the product's matcher, threshold and roster bound (their photos'
    embeddings and enrolment variants); a visit's identity is the mean of its photos' embeddings (as a track fuses
    its frames; no rendering, tracker or confirmation). The visits, in a random time order, go through two matchers
    over the same roster: one that learns nothing, and one that learns from its check-ins as the door does
    (adaptation.learn with the shipped settings; every visit taken as seen in all its frames at good quality,
    liveness off). Counts, per mode, visits recognised (and from each person's third visit on), named wrongly,
    strangers accepted, and who was taken for whom (`taken_for`: "stranger as enrolled person" or "person as someone
    else", with counts): a rate driven by one look-alike pair says something other than one spread over everybody."""
    from bench.accuracy import enrolled_gallery, joined_view
    from edge.config import AdaptationConfig
    from edge.events import Decision
    from edge.identity.fusion import join
    from edge.identity.matcher import build_matcher
    from edge.identity.svc import fit_here
    from edge.recognition.adaptation import learn

    view = joined_view(parts, views)
    adaptation = AdaptationConfig(enabled=True)  # the shipped guards, switched on
    counts: dict[str, dict] = {mode: {**dict.fromkeys(SCALE_KEYS, 0), "taken_for": {}} for mode in ("off", "on")}
    for chosen, enrolled, visits in scale_rounds(faces_by_person(photos, view.vectors), k, rounds, seed):
        for mode in ("off", "on"):
            matcher = build_matcher(enrolled_gallery(view, enrolled), "auto", svc_fit=fit_here,
                                    learned_per_person=adaptation.max_per_person if mode == "on" else 0)
            seen: dict[str, int] = {}
            for t, (person, group) in enumerate(visits):
                fused = join([np.mean([view.vectors[i] for i in group], axis=0)])
                match = matcher.match(fused)
                answer = match.person_id if match.known else None
                count_visit(counts[mode], seen, chosen, person, answer)
                if mode == "on" and answer is not None:
                    decision = Decision("check_in", person_id=answer, name=answer, score=match.score,
                                        extra={"track_id": None, "liveness": None})
                    counts[mode]["templates_learned"] += learn(
                        adaptation, matcher, decision, fused, 1.0, VISIT_PHOTOS * FRAMES_PER_PHOTO, False,
                        float(t)) is not None
    return counts


def face_recognition_at_scale(photos: list, view, k: int, rounds: int, tolerance: float, seed: int = 7) -> dict:
    """face_recognition (dlib) beside the product at the matcher, on the same rounds where it finds the same faces: a
    visit is the mean of its photos' encodings, named as the person of the nearest enrolled encoding within
    `tolerance` (its documented rule, applied to a visit's mean), else a stranger. No learning."""
    counts = {**dict.fromkeys(SCALE_KEYS, 0), "taken_for": {}}
    for chosen, enrolled, visits in scale_rounds(faces_by_person(photos, view.vectors), k, rounds, seed):
        identify = face_recognition_identify(view, photos, enrolled, tolerance)
        seen: dict[str, int] = {}
        for person, group in visits:
            count_visit(counts, seen, chosen, person, identify(np.mean([view.vectors[i] for i in group], axis=0)))
    return counts


def print_at_scale(label: str, c: dict) -> None:
    print(f"{label}: visits recognised {c['recognised']}/{c['visits']} ({c['recognised'] / max(c['visits'], 1):.1%}; "
          f"from the 3rd visit {c['third_on_recognised']}/{c['third_on']}), named wrongly {c['named_wrongly']}, "
          f"strangers accepted {c['strangers_accepted']}/{c['stranger_visits']} "
          f"({c['strangers_accepted'] / max(c['stranger_visits'], 1):.3%}; at most "
          f"{upper_95(c['strangers_accepted'], c['stranger_visits']):.3%} at 95 %); templates learned "
          f"{c['templates_learned']}")
    if c["taken_for"]:
        taken = sorted(c["taken_for"].items(), key=lambda item: -item[1])
        print(f"{'':44} taken for someone else: " + ", ".join(f"{who} {n}" for who, n in taken[:TAKEN_SHOWN])
              + (f", and {len(taken) - TAKEN_SHOWN} more pairs" if len(taken) > TAKEN_SHOWN else ""))


def face_recognition_view(photos: list, whole_crop: bool):
    """face_recognition's encodings of the photos (bench.accuracy.embed_face_recognition), None where it cannot run
    (the smoke pass requires it: scripts/bootstrap installs it)."""
    from bench.accuracy import embed_face_recognition

    try:
        return embed_face_recognition(photos, whole_crop)
    except (Exception, SystemExit) as exc:  # face_recognition calls quit() when its models are missing
        if smoke_mode_on():
            raise SystemExit(f"face_recognition cannot run ({exc}): scripts/bootstrap installs it") from None
        print(f"face_recognition not available ({exc}); scripts/bootstrap installs it")
        return None


def embedded_views(models: list[Path], photos: list, augmentations: int) -> dict:
    """Each model's embeddings of the photos (both views, and the enrolment variants), as enrolment computes them."""
    from bench.accuracy import detect_largest, embed_ours

    detections = detect_largest(photos, pad=True)
    return {model: embed_ours(model, detections, augmentations) for model in dict.fromkeys(models)}


def upper_95(events: int, trials: int) -> float:
    """The one-sided 95 % upper bound on a rate seen `events` times in `trials` (Clopper-Pearson)."""
    from scipy.stats import beta

    return 1.0 if trials == 0 or events >= trials else float(beta.ppf(0.95, events + 1, trials - events))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--k", type=int, default=5, help="enrolment photos per enrolled person")
    parser.add_argument("--models", default="facenet-keras-int8full,mobilefacenet-float32,"
                        "facenet-keras-int8full+mobilefacenet-float32",
                        help="comma-separated model file stems in models/, a+b for both fused (embedder.fuse_with); "
                        "those not built are skipped")
    parser.add_argument("--split-distance", type=float, help="tracking.split_distance for this run (default: the "
                        "config's; 2 = a visit's track is never split)")
    parser.add_argument("--population", choices=["western", "east asian"], help="only this population")
    parser.add_argument("--scale-rounds", type=int, default=400,
                        help="rounds of stranger visits at the matcher (0: none)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    tracking = {"split_distance": args.split_distance} if args.split_distance else None
    smoke = smoke_mode(args.smoke)
    rounds = 1 if smoke else args.rounds
    systems = {spec: tuple(ROOT / "models" / f"{stem}.tflite" for stem in spec.split("+"))
               for spec in args.models.split(",")}
    built = {spec: parts for spec, parts in systems.items() if all(p.is_file() for p in parts)}
    result: dict = {"machine": machine(), "k": args.k, "rounds": rounds, "tracking": tracking, "populations": {}}
    started = time.monotonic()
    result["door_clip"] = {}
    print("\n== the demo's door clip (two enrolled visitors, two strangers), played twice")
    for spec, parts in built.items() if not args.population else []:
        with tempfile.TemporaryDirectory() as tmp:
            clip = result["door_clip"][spec] = door_clip(parts, Path(tmp))
        for mode, t in clip.items():
            print(f"{spec:44} learning {mode:3}: visits recognised within 2 s {t['recognised_within_2s']}/"
                  f"{t['visits']}, named wrongly {t['named_wrongly']}, strangers checked in {t['strangers_checked_in']}/"
                  f"{t['stranger_visits']}; templates learned {t['templates_learned']}")
    for name, (photos, pad) in populations(args.shared).items():
        if args.population and not name.startswith(args.population):
            continue
        by_person: dict[str, list] = {}
        for photo in photos:
            by_person.setdefault(photo.person, []).append(photo.path)
        crops = face_crops(photos)
        print(f"\n== {name}: {len(photos)} photos of {len(by_person)} people, k = {args.k}, {rounds} rounds of "
              f"{ENROLLED} enrolled and {STRANGERS} strangers")
        result["populations"][name] = {}
        for spec, parts in systems.items():
            if spec not in built:
                print(f"skipping {spec}: not built")
                continue
            result["populations"][name][spec] = {}
            if not rounds:  # --rounds 0: only the visits at the matcher
                continue
            totals: dict[str, dict[str, int]] = {"off": {}, "on": {}}
            rng = np.random.default_rng(31)
            with tempfile.TemporaryDirectory() as tmp:
                for _ in range(rounds):
                    for mode, counts in one_round(parts, by_person, crops, args.k, rng, Path(tmp), tracking,
                                                  2 if smoke else MAX_VISITS).items():
                        for key, value in counts.items():
                            totals[mode][key] = totals[mode].get(key, 0) + value
            result["populations"][name][spec].update({f"adaptation {mode}": t for mode, t in totals.items()})
            for mode, t in totals.items():
                visits, strangers, later = (max(t["visits"], 1), max(t["stranger_visits"], 1),
                                            max(t["later_visits"], 1))
                print(f"{spec:44} learning {mode:3}: visits recognised within 2 s {t['recognised_within_2s']}/"
                      f"{t['visits']} ({t['recognised_within_2s'] / visits:.1%}; later visits "
                      f"{t['later_recognised_within_2s']}/{t['later_visits']}, "
                      f"{t['later_recognised_within_2s'] / later:.1%}), named wrongly {t['named_wrongly']}, strangers "
                      f"checked in {t['strangers_checked_in']}/{t['stranger_visits']} "
                      f"({t['strangers_checked_in'] / strangers:.2%}); templates learned {t['templates_learned']} "
                      f"(from strangers {t['learned_from_strangers']}, as someone else {t['learned_as_someone_else']})")
                by_visit = [f"{t[f'visit {n} recognised']}/{t[f'visit {n} of']}" for n in range(1, MAX_VISITS + 1)
                            if f"visit {n} of" in t]
                print(f"{'':44} recognised within 2 s by each person's 1st, 2nd, ... visit: {', '.join(by_visit)}")
        scale_rounds = SCALE_ROUNDS_SMOKE if smoke else args.scale_rounds
        if scale_rounds:
            print(f"-- at the matcher: {scale_rounds} rounds, every photo not enrolled in a visit of {VISIT_PHOTOS} "
                  "(its identity the mean of its photos')")
            views = embedded_views([p for parts in built.values() for p in parts], photos, 2 if smoke else AUGMENTATIONS)
            for spec, parts in built.items():
                both = at_scale(parts, photos, views, args.k, scale_rounds)
                result["populations"][name][spec]["at the matcher"] = {**both, "rounds": scale_rounds}
                for mode, c in both.items():
                    print_at_scale(f"{spec:44} learning {mode:3}", c)
            fr = face_recognition_view(photos, pad)
            if fr is not None:
                strict = strict_tolerance(fr, photos)
                for label, tolerance in ((f"face_recognition 1.3.0 (dlib, tolerance {FACE_RECOGNITION_TOLERANCE})",
                                          FACE_RECOGNITION_TOLERANCE),
                                         (f"face_recognition, tolerance {strict:.3f} (strict)", strict)):
                    c = face_recognition_at_scale(photos, fr, args.k, scale_rounds, tolerance)
                    result["populations"][name][label] = {"at the matcher": {"off": c, "rounds": scale_rounds}}
                    print_at_scale(f"{label:57}", c)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"\nwrote {write('visits', result)} in {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
