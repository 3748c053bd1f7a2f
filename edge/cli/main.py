"""The `facecheck` command (README, Using it): exit 0 success, 2 bad input/config, 1 other failures."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from edge import __version__
from edge.config import SIGNED_COMMANDS, Config, ConfigError, LogConfig, load_config
from edge.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, FaceCheckError, InputError

log = logging.getLogger("facecheck")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecheck", description="Touchless face + gesture attendance at the door.")
    parser.add_argument("--version", action="version", version=f"facecheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", help="config file (default ./config.yaml, then /etc/facecheck/config.yaml)")
        return p

    with_config(sub.add_parser("run", help="run the daemon"))
    demo = sub.add_parser("demo", help="the whole pipeline on the shipped sample photos; no camera or broker needed")
    demo.add_argument("--model", type=Path, help="FaceNet .tflite (default: the one config.yaml names, else models/); "
                      "fused with the MobileFaceNet beside it, as config.yaml's embedder.fuse_with says")
    demo.add_argument("--keep", type=Path, help="keep the demo's state and frames in this folder")

    enroll = with_config(sub.add_parser("enroll", help="enrol one person from photos, or one per sub-folder"))
    enroll.add_argument("--name", help="the person's name")
    enroll.add_argument("--id", dest="person_id", help="the person's id (default: existing id of NAME, else new)")
    enroll.add_argument("--folders", type=Path, help="a folder with one sub-folder of photos per person")
    enroll.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="photos or folders of photos")
    enroll.add_argument("--camera", action="store_true", help="enrol --name from the door's own camera: stand in front "
                        "of it and follow the printed guidance (poses: frontal, left, right, up, down)")
    enroll.add_argument("--frames", type=int, default=5, metavar="N", help="--camera: frames to keep (default 5)")
    enroll.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="--camera: give up after S seconds, enrolling from what was kept if any")
    enroll.add_argument("--force", action="store_true",
                        help="accept photos below the size, sharpness and frontalness limits (one face still needed)")

    calibrate = with_config(sub.add_parser("calibrate", help="measure the site's own operating point from photos of "
                                           "its people (one sub-folder per person); it can only tighten the model's"))
    calibrate.add_argument("folder", type=Path, metavar="FOLDER")

    roster = with_config(sub.add_parser("roster", help="list or remove enrolled people"))
    roster_sub = roster.add_subparsers(dest="roster_command", required=True)
    roster_sub.add_parser("list", help="list enrolled people")
    remove = roster_sub.add_parser("remove", help="erase a person's embeddings")
    remove.add_argument("person_id", metavar="ID")
    publish = roster_sub.add_parser("publish", help="publish this gallery as the site roster every door applies")
    publish.add_argument("--site", help="site name (default: roster.site of the config)")
    publish.add_argument("--version", type=int, help="roster version (default: now in milliseconds; must grow)")
    reset = roster_sub.add_parser("reset-adapted", help="forget the templates the door learned from confirmed visits")
    reset.add_argument("--person", dest="person_id", help="only this person's (default: everyone's)")
    roster_sub.add_parser("seal", help="seal a plaintext gallery from before (once), under this door's gallery key")
    roster_sub.add_parser("rekey", help="re-seal the gallery under a new gallery key (the old key file is kept as .old)")
    keys = sub.add_parser("keys", help="make key files for sealing galleries, site rosters and capture embeddings")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    generate = keys_sub.add_parser("generate", help="a new key file (0600); signing and backend also write a .pub")
    generate.add_argument("kind", choices=["gallery", "roster", "signing", "backend"],
                          help="gallery: a door's own key; roster: the site roster key; signing: the enrolment "
                               "station's Ed25519 pair; backend: the X25519 pair capture embeddings are sealed to")
    generate.add_argument("--out", required=True, type=Path, help="the key file to create (never overwritten)")

    identify = with_config(sub.add_parser("identify", help="who is in these images (JSON per image)"))
    identify.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    identify.add_argument("--explain", action="store_true",
                          help="per face also the three nearest people, the threshold and margin, and its quality")
    gesture = with_config(sub.add_parser("gesture", help="which gesture these images show (JSON per image)"))
    gesture.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    gestures = with_config(sub.add_parser("gestures", help="record a door's own gesture samples, train the site's "
                                          "classifier on them, or measure the classifier in force on labelled photos"))
    gestures_sub = gestures.add_subparsers(dest="gestures_command", required=True)
    record = gestures_sub.add_parser("record", help="save landmark samples of one gesture from images or the camera")
    record.add_argument("--label", required=True, choices=["confirm", "reject", "capture", "none"],
                        help="the gesture shown (arms down and every other pose: none)")
    record.add_argument("--camera-frames", type=int, default=0, metavar="N", help="take N frames from the camera")
    record.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    gestures_sub.add_parser("train", help="train the site's classifier on the packaged real poses plus the recorded "
                            "samples (then set gestures.classifier: trained)")
    evaluate = gestures_sub.add_parser("evaluate", help="the confusion table of the classifier in force on "
                                       "labelled photos")
    evaluate.add_argument("labelled", nargs="+", metavar="LABEL=FOLDER",
                          help="a gesture (confirm, reject, capture, standby, none) and a folder of its photos")
    with_config(sub.add_parser("doctor", help="check camera, models, gallery, broker and disk"))
    snapshot = with_config(sub.add_parser("snapshot", help="save the current camera frame with faces drawn"))
    snapshot.add_argument("-o", "--output", required=True, type=Path, help="JPEG file to write")
    sign = with_config(sub.add_parser("sign-command", help="make a signed command payload for enroll, remove or snapshot"))
    sign.add_argument("name", choices=SIGNED_COMMANDS, help="the command")
    sign.add_argument("--device", help="the door's device_id (default: the config's)")
    sign.add_argument("--body", default="{}", help="the command's JSON body, or @FILE to read it from a file")
    install = sub.add_parser("install-service", help="print the steps that install the systemd service")
    install.add_argument("--dry-run", action="store_true", required=True, help="print the steps (required)")
    install.add_argument("--prefix", default="/opt/facecheck", help="install location (default /opt/facecheck)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_config_option_first(argv if argv is not None else sys.argv[1:]))
    try:
        return _dispatch(args)
    except FaceCheckError as exc:
        print(f"facecheck: {'config error: ' if isinstance(exc, ConfigError) else ''}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return EXIT_OK


def _config_option_first(argv: list[str]) -> list[str]:
    """`-c FILE` may stand anywhere after the command (`facecheck roster list -c x.yaml`): move it to
    where argparse expects it, right after the command name."""
    args = list(argv)
    for i, arg in enumerate(args):
        if i >= 2 and (arg in ("-c", "--config") and i + 1 < len(args)):
            option = args[i:i + 2]
            del args[i:i + 2]
            return args[:1] + option + args[1:]
        if i >= 2 and arg.startswith("--config="):
            del args[i]
            return args[:1] + [arg] + args[1:]
    return args


def _config(args) -> Config:
    from edge.service.logs import setup_logging

    config = load_config(getattr(args, "config", None))
    setup_logging(config.log)
    return config


def _dispatch(args) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _run, "demo": _demo, "enroll": _enroll, "calibrate": _calibrate, "roster": _roster, "keys": _keys,
        "identify": _identify, "gesture": _gesture, "gestures": _gestures, "doctor": _doctor, "snapshot": _snapshot,
        "sign-command": _sign_command, "install-service": _install_service}
    return handlers[args.command](args)


def _run(args) -> int:
    from edge.service.daemon import Daemon

    daemon = Daemon(_config(args))
    daemon.install_signal_handlers()
    return daemon.run()


def _demo(args) -> int:
    from edge.cli.demo import run_demo
    from edge.service.logs import setup_logging

    setup_logging(LogConfig(level="warning"))
    return run_demo(args.model, args.keep)


def _keys(args) -> int:
    from edge.security.sealing import generate

    for path in generate(args.kind, args.out):
        print(f"wrote {path}")
    return EXIT_OK


def _doctor(args) -> int:
    from edge.cli.doctor import run_doctor
    from edge.service.logs import setup_logging

    config = load_config(args.config)
    setup_logging(LogConfig(level="error"))
    return run_doctor(config)


def _install_service(args) -> int:
    from edge.cli.install import install_steps

    print(install_steps(args.prefix))
    return EXIT_OK


def _calibrate(args) -> int:
    """Measure and write the site's operating point (matcher.site_point); print what it does as JSON."""
    from edge.identity.operating import save_site_point
    from edge.recognition.calibration import calibrate
    from edge.service.assembly import build_identity

    config = _config(args)
    result = calibrate(build_identity(config), args.folder, config.limits.max_image_pixels)
    for photo, why in result.skipped.items():
        print(f"skipped {photo}: {why}", file=sys.stderr)
    point = result.point
    save_site_point(point, config.matcher.site_point)
    print(json.dumps({
        "site_point": point.as_dict(), "written_to": str(config.matcher.site_point),
        "model_point": point.model_threshold, "threshold_in_force": point.in_force,
        "what_it_does": (f"tightens the model's threshold {point.model_threshold} to {point.threshold}"
                         if point.model_threshold is not None and point.threshold < point.model_threshold
                         else "leaves the model's threshold as it is (the site's people lie no closer than the model's "
                         "measured impostors)"),
        "site_genuine_pairs_accepted": round(point.tar, 4)}, indent=2))
    return EXIT_OK


def _enroll(args) -> int:
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    if bool(args.folders) == bool(args.name):
        raise InputError("enroll takes --name NAME PATH... for one person, or --folders DIR (one sub-folder each)")
    if args.camera:
        return _enroll_from_camera(args)
    if args.name and not args.paths:
        raise InputError("enroll --name NAME needs at least one photo or folder PATH")
    config = _config(args)
    identifier = build_identifier(config, with_matcher=False)
    if args.folders:
        if not args.folders.is_dir():
            raise InputError(f"--folders {args.folders}: not a folder")
        people = [(d.name, [d]) for d in sorted(args.folders.iterdir()) if d.is_dir()]
        if not people:
            raise InputError(f"--folders {args.folders}: no sub-folders (one per person) inside")
    else:
        people = [(args.name, args.paths)]
    failed = 0
    for name, paths in people:
        try:
            report = enrol(identifier, GalleryFile.from_config(config), name, paths,
                           args.person_id if args.name else None, config.matcher.augmentations,
                           progress=sys.stderr.isatty(), max_pixels=config.limits.max_image_pixels,
                           force=args.force, threshold=config.matcher.distance_threshold)
        except InputError as exc:
            if not args.folders:
                raise
            print(f"skipped {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for path, why in report.skipped.items():
            print(f"skipped {path}: {why}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"enrolled {report.name} as {report.person_id} from {len(report.used)} photo(s)")
    return EXIT_USAGE if failed else EXIT_OK


def _enroll_from_camera(args) -> int:
    """`enroll --camera`: frames from the configured camera until the session has them (or the timeout); guidance and
    progress on stderr, the result as JSON on stdout. The frames stay in memory; only templates are stored."""
    from edge.camera import camera_frames
    from edge.identity.gallery import GalleryFile
    from edge.recognition.camera_enrol import MAX_FRAMES, CameraEnrolment
    from edge.recognition.enroll import enrol_images
    from edge.service.assembly import build_identifier

    if args.paths:
        raise InputError("enroll --camera takes no photo PATHs: it enrols from the camera")
    if not 1 <= args.frames <= MAX_FRAMES:
        raise InputError(f"--frames {args.frames}: keep 1 to {MAX_FRAMES} frames")
    config = _config(args)
    identifier = build_identifier(config, with_matcher=False)
    session = CameraEnrolment(args.frames)
    print(f"enrolling {args.name} from {config.camera.kind} camera: {session.guidance()}", file=sys.stderr)
    last, seen = "", 0
    for _, image in camera_frames(config.camera, 10**9, args.timeout):  # ends at the timeout, frames or not
        seen += 1
        faces = identifier.faces(image)
        embedding, quality = identifier.embed_with_quality(image, faces[0], "plain") if len(faces) == 1 else (None, None)
        said = session.offer(image, faces, quality, embedding)
        if said != last:
            print(f"[{len(session.kept)}/{session.frames}] {said}", file=sys.stderr)
            last = said
        if session.done:
            break
    if not seen:
        raise InputError(f"enroll --camera: the {config.camera.kind} camera gave no frame in {args.timeout:.0f} s; "
                         "`facecheck doctor` checks the camera section of the config")
    if not session.kept:
        raise InputError(f"enroll --camera: no usable frame of {args.name} in {args.timeout:.0f} s (last: {last}); "
                         "check the camera's aim with `facecheck snapshot`, then stand 0.5-1.5 m in front of it")
    report = enrol_images(identifier, GalleryFile.from_config(config), args.name, session.images(), args.person_id,
                          config.matcher.augmentations, force=args.force, threshold=config.matcher.distance_threshold)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps({"person_id": report.person_id, "name": report.name, **session.summary(),
                      "skipped": report.skipped, "warnings": report.warnings}))
    return EXIT_OK


def _roster(args) -> int:
    from edge.identity.gallery import GalleryFile

    config = _config(args)
    stored = GalleryFile.from_config(config)
    path = stored.path
    if args.roster_command in ("seal", "rekey"):
        return _roster_reseal(stored, args.roster_command)
    if args.roster_command == "list":
        if not path.exists():
            print(f"no one enrolled yet ({path} does not exist)", file=sys.stderr)
            return EXIT_OK
        gallery = stored.load()
        counts, adapted = gallery.counts(), gallery.adapted_counts()
        for pid, name in zip(gallery.person_ids, gallery.names):
            photos, total = counts[pid]
            print(json.dumps({"person_id": pid, "name": name, "photos": photos, "embeddings": total,
                              "adapted": adapted[pid]}))
        return EXIT_OK
    if args.roster_command == "reset-adapted":
        gallery = stored.load()
        gone = gallery.reset_adapted(args.person_id)
        stored.save(gallery)
        print(f"forgot {gone} template(s) learned from visits" + (f" of {gallery.name_of(args.person_id)}"
                                                                  if args.person_id else "")
              + "; a running door drops them at its next reload (systemctl reload facecheck)")
        return EXIT_OK
    if args.roster_command == "publish":
        return _roster_publish(config, stored.load(), args)
    gallery = stored.load()
    if args.person_id not in gallery.person_ids:
        raise InputError(f"roster remove: no person with id {args.person_id!r} in {path} (see `facecheck roster list`)")
    name = gallery.name_of(args.person_id)
    gallery.remove(args.person_id)
    stored.save(gallery)
    print(f"removed {name} ({args.person_id}) and all their embeddings")
    if config.roster_topic:
        print("this door follows a site roster: remove them at the enrolment station and publish, or the next "
              "roster version brings them back", file=sys.stderr)
    return EXIT_OK


def _roster_reseal(stored, command: str) -> int:
    if command == "seal":
        print(stored.seal_plaintext())
    else:
        print(stored.rekey())
    return EXIT_OK


def _roster_publish(config: Config, gallery, args) -> int:
    """Exit 1 when a broker could not be reached: the doors on the others have the roster; publish again
    once that node is back (messaging.roster.publish_site_roster says why every node matters)."""
    from edge.messaging.roster import publish_site_roster

    report = publish_site_roster(config, gallery, args.site, args.version)
    if report.manifest is None:  # no broker reached
        print(f"facecheck: roster publish: cannot reach the broker: {'; '.join(report.unreachable.values())}",
              file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps({"topic": report.topic, **report.manifest, "nodes": report.nodes}))
    if report.unreachable:
        print(f"facecheck: roster publish: version {report.manifest['version']} is on "
              f"{len(report.nodes) - len(report.unreachable)} of {len(report.nodes)} brokers; not on "
              f"{', '.join(report.unreachable)}: publish again once they are back", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _sign_command(args) -> int:
    """Prints the payload to publish on <base>/cmd/<name>; the key comes from where the doors read it."""
    from edge.security.command_auth import sign, signing_key

    config = load_config(args.config)
    key = signing_key(config.commands)
    if key is None:
        from edge.security.secrets import COMMAND_KEY

        raise InputError(f"sign-command: no signing key: set {COMMAND_KEY.places()}")
    text = args.body
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise InputError(f"sign-command --body {args.body}: {exc.strerror}") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise InputError(f"sign-command --body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InputError("sign-command --body: must be a JSON object")
    print(json.dumps(sign(key, args.device or config.device_id, args.name, body)))
    return EXIT_OK


def _identify(args) -> int:
    from edge.images import read_image
    from edge.service.assembly import LIVENESS_INSTALL, build_identifier, liveness_status

    config = _config(args)
    identifier = build_identifier(config, liveness_required=False)
    absent = liveness_status(config) == "not installed"
    if absent:
        print(f"facecheck: warning: liveness: not installed: photos are not checked for spoofing; install the models "
              f"with `{LIVENESS_INSTALL.format(models=config.models.dir)}` (docs/liveness.md)", file=sys.stderr)
    status = EXIT_OK
    for path in args.images:
        try:
            image = read_image(path, config.limits.max_image_pixels)
        except InputError as exc:
            print(json.dumps({"image": str(path), "faces": [], "error": str(exc)}))
            print(f"facecheck: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        faces = [{**face.as_dict(), **({"liveness": "not installed"} if absent else {}),
                  **({"explain": identifier.explain(face)} if args.explain else {})}
                 for face in identifier.identify(image)]
        print(json.dumps({"image": str(path), "faces": faces}), flush=True)
    return status


def _gesture(args) -> int:
    from edge.images import read_image
    from edge.service.assembly import build_gesture_classifier, build_pose

    config = _config(args)
    pose_model, classifier = build_pose(config), build_gesture_classifier(config)
    status = EXIT_OK
    for path in args.images:
        try:
            image = read_image(path, config.limits.max_image_pixels)
        except InputError as exc:
            print(json.dumps({"image": str(path), "gesture": "none", "people": 0, "error": str(exc)}))
            print(f"facecheck: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        poses = pose_model.poses(image)
        gesture = classifier.classify(poses[0]) if poses else "none"
        print(json.dumps({"image": str(path), "gesture": gesture, "people": len(poses)}), flush=True)
    return status


def _gestures(args) -> int:
    from edge.camera import camera_frames
    from edge.images import read_image
    from edge.inference.gesture_model import train_site
    from edge.recognition import gesture_samples
    from edge.service.assembly import build_gesture_classifier, build_pose

    config = _config(args)
    g = config.gestures
    samples = gesture_samples.samples_path(g.trained_model)
    if args.gestures_command == "evaluate":
        folders = gesture_samples.labelled_folders(args.labelled)
        confusion = gesture_samples.evaluate(build_pose(config), build_gesture_classifier(config), folders,
                                             config.limits.max_image_pixels)
        print(f"classifier {g.classifier}: {sum(len(p) for _, p in folders)} photos")
        print(confusion.table())
        return EXIT_OK
    if args.gestures_command == "train":
        if not samples.exists():
            raise InputError(f"{samples}: no samples yet; record them with `facecheck gestures record`")
        report = train_site(samples, g.trained_model, g.min_visibility)
        print(json.dumps({"model": str(g.trained_model), **report}))
        return EXIT_OK
    if not args.images and args.camera_frames <= 0:
        raise InputError("gestures record needs IMAGE paths or --camera-frames N")
    images = [(str(p), read_image(p, config.limits.max_image_pixels)) for p in args.images]
    if args.camera_frames:
        images += list(camera_frames(config.camera, args.camera_frames))
    recording = gesture_samples.record(build_pose(config), images, args.label, samples, g.min_visibility)
    for name in recording.skipped:
        print(f"skipped {name}: no person with both shoulders visible", file=sys.stderr)
    print(json.dumps(recording.as_dict()))
    return EXIT_OK


def _snapshot(args) -> int:
    from edge.camera import open_capture
    from edge.recognition.pipeline import FrameResult
    from edge.recognition.snapshot import snapshot_jpeg
    from edge.service.assembly import build_identifier

    if args.output.suffix.lower() not in (".jpg", ".jpeg"):
        raise InputError(f"-o {args.output}: the snapshot is a JPEG; name it .jpg")
    if not args.output.parent.is_dir():
        raise InputError(f"-o {args.output}: folder {args.output.parent} does not exist")
    config = _config(args)
    identifier = build_identifier(config)
    capture = open_capture(config.camera).start()
    try:
        frame = capture.get(timeout=10)
    finally:
        capture.stop()
    if frame is None:
        print(f"facecheck: no frame from {capture.source.name}: {capture.error or 'timed out after 10 s'}",
              file=sys.stderr)
        return EXIT_USAGE if capture.error else EXIT_FAILURE
    from edge.cli.placement import FRAMING_ADVICE, framing_problems
    from edge.service.assembly import build_pose

    faces = identifier.identify(frame.image)
    poses = build_pose(config).poses(frame.image)
    args.output.write_bytes(snapshot_jpeg(frame.image, FrameResult(frame.index, frame.ts, faces, []), poses,
                                          config.gestures.min_visibility))
    framing = framing_problems(poses, frame.image.shape[1], frame.image.shape[0])
    if framing:
        print(f"facecheck: warning: {'; '.join(framing)}: {FRAMING_ADVICE}", file=sys.stderr)
    print(json.dumps({"snapshot": str(args.output), "people": len(poses), "framing": framing,
                      "faces": [f.as_dict() for f in faces]}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
