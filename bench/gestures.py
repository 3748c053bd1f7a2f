"""Pose latency per frame and the decision latency from the confirming frame to the event.

    .venv/bin/python -m bench.gestures [--repeat 30]

Uses the real pose models on real photographs (tests/data/registry, fetched by scripts/bootstrap)
and the real face models. The decision latency is measured in its parts on the same machine: the
confirming frame through the whole pipeline with pose running (as while a confirmation is pending),
the fsync'd outbox append, and publish -> PUBACK on a loopback mosquitto; their sum is reported.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2

from bench.common import ROOT, SMOKE_HELP, default_embedder, machine, measure, results_dir, smoke_mode, write
from edge.camera.base import Frame
from edge.config import config_from_dict
from edge.inference.gestures import GestureStage, RuleClassifier, build_classifier
from edge.inference.pose import BlazePose
from edge.recognition.decision import Confirmation
from edge.recognition.pipeline import Pipeline


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    if smoke:
        args.repeat = 2
    photos = ROOT / "tests" / "data" / "registry"
    bus = cv2.imread(str(photos / "bus.jpg"))
    if bus is None:
        print(f"{photos}/bus.jpg missing: run scripts/bootstrap", file=sys.stderr)
        return 1
    frame640 = cv2.resize(bus, (640, 480))
    pose = BlazePose()
    result = {"machine": machine(), "pose": {}, "decision": {}}
    result["pose"]["detect people 640x480"] = measure(lambda: pose.people(frame640), args.repeat)
    person = pose.people(bus)[0]
    result["pose"]["landmarks per person"] = measure(lambda: pose.landmarks(bus, person), args.repeat)
    result["pose"]["pose per frame 640x480 (detect + landmarks)"] = measure(lambda: pose.poses(frame640), args.repeat)
    rules, classifier = RuleClassifier(0.4), build_classifier("learned", ROOT / "unused", 0.5)
    found = pose.poses(bus)
    result["pose"]["gesture rules"] = measure(lambda: rules.classify(found[0]), args.repeat * 10)
    result["pose"]["gesture learned (default)"] = measure(lambda: classifier.classify(found[0]), args.repeat * 10)

    from edge.service.assembly import build_identifier

    work = ROOT / "bench" / "results" / "gesture-state"
    config = config_from_dict({"embedder": default_embedder(),
                               "detector": {"model": "full_range", "min_face_px": 20},
                               "matcher": {"gallery": str(work / "gallery.npz")},
                               "confirmation": {"require_gesture": True}}, base_dir=ROOT)
    identifier = build_identifier(config, with_matcher=False)
    stage = GestureStage(pose, classifier, 0.5)
    pipeline = Pipeline(identifier, Confirmation(config.confirmation), gestures=stage)
    pipeline.confirmation.awaiting = lambda: True  # time the frames of a pending confirmation
    frame = Frame(frame640, 0.0, 0, "bench")
    result["decision"]["confirming frame through the pipeline (pose on)"] = measure(
        lambda: pipeline.process(frame), args.repeat)

    from bench.outbox_mqtt import main as outbox_main

    outbox_json = results_dir() / "outbox_mqtt.json"
    if not outbox_json.is_file():
        outbox_main(["--events", "500", "--latency-samples", "100"] + (["--smoke"] if smoke else []))
    outbox = json.loads(outbox_json.read_text())
    frame_p50 = result["decision"]["confirming frame through the pipeline (pose on)"]["p50_ms"]
    puback_p50 = outbox["decision_to_puback_ms"]["p50"]
    result["decision"]["outbox append + publish -> PUBACK p50 ms"] = puback_p50
    result["decision"]["confirming frame -> event acknowledged, p50 ms"] = round(frame_p50 + puback_p50, 2)
    for group in ("pose", "decision"):
        for name, stats in result[group].items():
            if isinstance(stats, dict):
                print(f"{name:52} p50 {stats['p50_ms']:8.2f} ms  p95 {stats['p95_ms']:8.2f} ms")
            else:
                print(f"{name:52} {stats:8.2f} ms")
    print(f"wrote {write('gestures', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
