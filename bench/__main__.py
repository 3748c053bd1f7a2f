"""The whole benchmark in one command (under 5 minutes on 2 cores):

    scripts/bench            # installs face_recognition for the comparison, then runs this
    .venv/bin/python -m bench [--quick]

Prints every number and writes bench/results/bench.json and bench/results/bench.png: per-stage
latency p50/p95, end-to-end fps on replayed 640x480 and 1280x720 frames with 0, 1 and 3 faces,
start-up time to the first processed frame and peak RSS of the real daemon, match time against
100 .. 100k identities, and face_recognition (dlib) side by side on the same photos.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bench.common import (
    ROOT,
    SMOKE_HELP,
    PeakRss,
    default_embedder,
    default_fused,
    default_model,
    machine,
    measure,
    smoke_mode,
    smoke_mode_on,
    write,
)
from bench.identity import DIM, GALLERY_SIZES, random_gallery
from edge.camera.base import Frame
from edge.config import config_from_dict
from edge.identity.matcher import NearestMatcher
from edge.inference.align import align_face
from edge.inference.detector import BlazeFaceDetector, FaceBox
from edge.inference.embedder import FaceNetEmbedder, embed_views
from edge.inference.tflite import INTERPRETER, resolve_threads
from edge.recognition.decision import Confirmation, Observation
from edge.recognition.enroll import enrol
from edge.samples import sample
from edge.service.assembly import build_identifier, build_identity

PEOPLE = {"obama": ["obama-1.jpg", "obama-2.jpg", "obama-3.jpg", "obama-partial.jpg"],
          "biden": ["biden-1.jpg"], "collins": ["collins-1.jpg"], "cameraman": ["cameraman.jpg"]}
MODEL = ROOT / "models" / "facenet-keras-{}.tflite"  # the default source; sandberg2018 in bench.identity
DEFAULT_MODEL = default_model()
DEFAULT_FUSED = default_fused()  # the door's default identity is DEFAULT_MODEL fused with these (MobileFaceNet)
MOBILEFACENET = ROOT / "models" / "mobilefacenet-float32.tflite"
DEFAULT = DEFAULT_MODEL.stem.rsplit("-", 1)[1]  # the shipped config's FaceNet precision (int8full)
IDENTITY = "default identity"  # FaceNet int8full fused with MobileFaceNet, as compare_face_recognition names it
PRECISIONS = ("float32", "float16", "int8", "int8full")


def section(title: str) -> None:
    print(f"\n== {title}")


def repeated(measure_once, runs: int) -> tuple[dict, dict]:
    """Runs a timed section `runs` times: (every number as the median over the runs, its [min, max])."""
    results = [measure_once() for _ in range(runs)]
    return _median(results), _spread(results)


def _median(results: list):
    first = results[0]
    if isinstance(first, dict):
        return {key: _median([r[key] for r in results]) for key in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return round(float(np.median(results)), 3)
    return first


def _spread(results: list):
    first = results[0]
    if isinstance(first, dict):
        return {key: _spread([r[key] for r in results]) for key in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return [round(float(min(results)), 3), round(float(max(results)), 3)]
    return None


def targets(result: dict) -> list[dict]:
    """Each target, judged on the medians over the runs, with the worst and best run beside it."""
    spread = result["spread"]
    one_face = "640x480 1 face(s)"
    rows = []

    def row(name, value, runs_range, limit, higher_is_better, unit):
        def meets(v):
            return v >= limit if higher_is_better else v <= limit
        low, high = runs_range
        worst, best = (low, high) if higher_is_better else (high, low)
        rows.append({"target": name, "median": value, "worst_run": worst, "best_run": best, "limit": limit,
                     "unit": unit, "met": meets(value), "met_in_every_run": meets(worst),
                     "met_in_any_run": meets(best)})

    row("one face at 640x480 >= 30 fps", result["pipeline"][one_face]["fps"],
        spread["pipeline"][one_face]["fps"], 30, True, "fps")
    row("p95 frame <= 50 ms (one face)", result["pipeline"][one_face]["p95_ms"],
        spread["pipeline"][one_face]["p95_ms"], 50, False, "ms")
    fr = result["face_recognition"]
    if "speedup_vs_face_recognition" in fr["ours"].get(IDENTITY, {}):
        row(f">= 20x faster per face than face_recognition ({IDENTITY})",
            fr["ours"][IDENTITY]["speedup_vs_face_recognition"],
            spread["face_recognition"]["ours"][IDENTITY]["speedup_vs_face_recognition"], 20, True, "x")
    if "100000" in result["match"]:  # (the smoke pass stops at 1,000)
        row("match at 100k identities <= 5 ms p95", result["match"]["100000"]["p95_ms"],
            spread["match"]["100000"]["p95_ms"], 5, False, "ms")
    row("peak RSS of the daemon (default identity) <= 400 MB", result["daemon"]["peak_rss_mb"],
        spread["daemon"]["peak_rss_mb"], 400, False, "MB")
    row("peak RSS of the daemon with MobileFaceNet alone <= 250 MB", result["daemon_mobilefacenet_alone"]["peak_rss_mb"],
        spread["daemon_mobilefacenet_alone"]["peak_rss_mb"], 250, False, "MB")
    return rows


def person_crop(photo: str, face_px: int) -> np.ndarray:
    """A head-and-shoulders crop of a sample photo, scaled so the face is face_px wide."""
    image = cv2.imread(str(sample(photo)))
    x, y, w, h = BlazeFaceDetector(min_face_px=20).detect(image)[0].box
    side = max(w, h)
    x0, y0 = int(max(0, x + w / 2 - 0.95 * side)), int(max(0, y - 0.6 * side))
    crop = image[y0:int(y + h + 0.8 * side), x0:int(x + w / 2 + 0.95 * side)]
    return cv2.resize(crop, None, fx=face_px / side, fy=face_px / side, interpolation=cv2.INTER_AREA)


def scene(width: int, height: int, faces: int, jitter: int, rng) -> np.ndarray:
    frame = np.full((height, width, 3), (190, 200, 205), np.uint8)
    photos = ["obama-3.jpg", "biden-1.jpg", "collins-1.jpg"][:faces]
    face_px = int(height * (0.3 if faces == 1 else 0.22))
    crops = [person_crop(p, face_px) for p in photos]
    slot = width // max(1, faces)
    for i, crop in enumerate(crops):
        ch, cw = crop.shape[:2]
        cw, ch = min(cw, slot), min(ch, height)
        dx, dy = rng.integers(-jitter, jitter + 1, 2)
        x0 = int(np.clip(i * slot + (slot - cw) // 2 + dx, 0, width - cw))
        y0 = int(np.clip(height - ch + dy, 0, height - ch))
        frame[y0:y0 + ch, x0:x0 + cw] = crop[:ch, :cw]
    return frame


def stage_latencies(repeat: int, threads: int) -> dict:
    from edge.inference.gestures import RuleClassifier, build_classifier
    from edge.inference.pose import BlazePose

    out = {}
    rng = np.random.default_rng(0)
    for w, h in ((640, 480), (1280, 720)):
        jpeg = cv2.imencode(".jpg", scene(w, h, 1, 4, rng), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        out[f"capture decode {w}x{h} JPEG"] = measure(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), repeat)
    frame = scene(640, 480, 1, 0, rng)
    detector = BlazeFaceDetector(threads=threads)
    face = detector.detect(frame)[0]
    out["detect 640x480 (BlazeFace short)"] = measure(lambda: detector.detect(frame), repeat)
    full = BlazeFaceDetector("full_range", threads=threads)
    out["detect 640x480 (BlazeFace full)"] = measure(lambda: full.detect(frame), repeat)
    margin = FaceNetEmbedder(DEFAULT_MODEL, threads).align_margin  # the model's own contract
    out["align"] = measure(lambda: align_face(frame, face, 160, margin), repeat)
    aligned = align_face(frame, face, 160, margin)
    for precision in PRECISIONS:
        embedder = FaceNetEmbedder(Path(str(MODEL).format(precision)), threads)
        out[f"embed {precision}"] = measure(lambda: embedder.embed(aligned), repeat)
    query = embedder.embed(aligned)
    if MOBILEFACENET.is_file():
        from edge.inference.face_landmarks import FaceMesh

        mobile, mesh = FaceNetEmbedder(MOBILEFACENET, threads), FaceMesh(ROOT / "models", threads)
        out["FaceMesh landmarks (for five-point alignment)"] = measure(lambda: mesh.landmarks(frame, face), repeat)
        points = mesh.landmarks(frame, face).points
        out["align five points"] = measure(lambda: align_face(frame, face, 112, 0.0, "arcface-5point", points), repeat)
        five = align_face(frame, face, 112, 0.0, "arcface-5point", points)
        out["embed mobilefacenet float32"] = measure(lambda: mobile.embed(five), repeat)
    matcher = NearestMatcher(random_gallery(150, 5))
    out["match (nearest, 150 people)"] = measure(lambda: matcher.match(query), repeat)
    pose = BlazePose(threads)
    bus = cv2.imread(str(ROOT / "tests" / "data" / "registry" / "bus.jpg"))
    people_frame = cv2.resize(bus, (640, 480)) if bus is not None else frame
    out["pose 640x480 (people + landmarks)"] = measure(lambda: pose.poses(people_frame), repeat)
    poses = pose.poses(people_frame)
    if poses:
        rules, learned = RuleClassifier(0.4), build_classifier("learned", Path("unused"), 0.5)
        out["gesture rules"] = measure(lambda: rules.classify(poses[0]), repeat)
        out["gesture learned (default)"] = measure(lambda: learned.classify(poses[0]), repeat)
    confirmation = Confirmation(config_from_dict({}, ROOT).confirmation)
    obs = [Observation(1, True, "p", "P", 0.9, "confirm", None, face.keypoints, 150.0)]
    ts = iter(range(10 ** 9))
    out["decision (state machine)"] = measure(lambda: confirmation.update(next(ts) / 10, obs), repeat)
    return out


def pipeline_fps(frames: int, threads: int, gallery: Path) -> dict:
    from edge.service.assembly import build_pipeline

    out = {}
    rng = np.random.default_rng(1)
    for reuse in (True, False):
        for w, h in ((640, 480), (1280, 720)):
            for faces in (0, 1, 3):
                if not reuse and (faces != 1 or w != 640):
                    continue
                config = config_from_dict({
                    "embedder": {**default_embedder(), "threads": threads},
                    "detector": {"threads": threads, "model": "short_range" if faces < 3 else "full_range"},
                    "matcher": {"gallery": str(gallery)}, "confirmation": {"require_gesture": False},
                    "tracking": {"reuse_iou": 0.8 if reuse else 1.0, "reembed_every_n_frames": 5 if reuse else 1}},
                    base_dir=ROOT)
                pipeline = build_pipeline(config)
                jpegs = [cv2.imencode(".jpg", scene(w, h, faces, 3, rng), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
                         for _ in range(10)]
                times, found = [], 0
                start = time.perf_counter()
                for i in range(frames):
                    t0 = time.perf_counter()
                    image = cv2.imdecode(jpegs[i % len(jpegs)], cv2.IMREAD_COLOR)
                    result = pipeline.process(Frame(image, i / 15, i, "bench"))
                    times.append((time.perf_counter() - t0) * 1000)
                    found += len(result.faces)
                total = time.perf_counter() - start
                key = f"{w}x{h} {faces} face(s){'' if reuse else ' (no embedding reuse)'}"
                out[key] = {"fps": round(frames / total, 1), "p50_ms": round(float(np.percentile(times, 50)), 2),
                            "p95_ms": round(float(np.percentile(times, 95)), 2),
                            "faces_found_per_frame": round(found / frames, 2),
                            "detector": config.detector.model}
    return out


def startup_and_rss(gallery: Path, work: Path, model: Path = DEFAULT_MODEL, matcher: str = "auto",
                    fuse_with: tuple[Path, ...] = ()) -> dict:
    """The real daemon in a fresh process: time to its first processed frame, and its peak RSS (with two people
    enrolled, matcher.kind auto is the SVC; fuse_with: embedder.fuse_with)."""
    import yaml

    frames = work / "startup-frames"
    frames.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for i in range(150):
        cv2.imwrite(str(frames / f"f{i:04d}.jpg"), scene(640, 480, 1, 3, rng))
    config = work / "startup.yaml"
    config.write_text(yaml.safe_dump({
        "camera": {"kind": "replay", "path": str(frames), "realtime": False},
        "models": {"dir": str(ROOT / "models")},
        "embedder": {"model": str(model), "fuse_with": [str(p) for p in fuse_with]},
        "matcher": {"gallery": str(gallery), "kind": matcher},
        "outbox": {"path": str(work / "outbox.sqlite")}, "mqtt": {"enabled": False},
        "confirmation": {"require_gesture": True}, "log": {"stage_timing_every_s": 0}}))
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    rss = PeakRss(proc.pid)
    ready, last = None, []
    for line in proc.stderr:
        last = (last + [line.rstrip()])[-3:]
        if ready is None and " ready: " in line:
            ready = time.monotonic() - start
    if proc.wait() != 0 or ready is None:
        raise RuntimeError(f"the daemon exited with {proc.returncode} before it was ready: " + " | ".join(last))
    return {"startup_to_first_frame_s": round(ready, 2), "peak_rss_mb": rss.peak_mb,
            "note": "the daemon with face models and the pose stage loaded, 150 replayed 640x480 frames"}


def match_scaling(repeat: int, sizes: tuple[int, ...]) -> dict:
    query = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    matchers = {n: NearestMatcher(random_gallery(n, 2)) for n in sizes}
    return {str(n): measure(lambda m=matcher: m.match(query), repeat) for n, matcher in matchers.items()}


def distances(vectors: dict[str, list[np.ndarray]]) -> dict:
    names = [(who, v) for who, vs in vectors.items() for v in vs]
    same, different = [], []
    for i, (a, va) in enumerate(names):
        for b, vb in names[i + 1:]:
            (same if a == b else different).append(float(np.linalg.norm(va - vb)))
    return {"same_max": round(max(same), 3), "different_min": round(min(different), 3),
            "margin": round(min(different) - max(same), 3), "same_mean": round(float(np.mean(same)), 3),
            "different_mean": round(float(np.mean(different)), 3)}


def compare_face_recognition(threads: int, repeat: int) -> dict:
    photos = [(who, p) for who, ps in PEOPLE.items() for p in ps]
    images = {p: cv2.imread(str(sample(p))) for _, p in photos}
    out: dict = {"images": len(photos), "ours": {}, "face_recognition": None}
    detector = BlazeFaceDetector(threads=threads)
    identity = build_identity(config_from_dict({"embedder": {**default_embedder(), "threads": threads}}, ROOT),
                              threads=threads)

    def facenet(precision: str) -> Callable[[np.ndarray, FaceBox, str], np.ndarray]:
        embedder = FaceNetEmbedder(Path(str(MODEL).format(precision)), threads)
        return lambda image, face, view: embed_views(embedder, align_face(image, face, 160, embedder.align_margin), view)

    embedders = {precision: facenet(precision) for precision in ("float16", "int8", "int8full")}
    embedders[IDENTITY] = lambda image, face, view: identity.embed_with_quality(image, face, view)[0]
    for name, embed in embedders.items():
        vectors: dict[str, list[np.ndarray]] = {}
        times, photo_times = [], []
        for who, p in photos:
            image = images[p]

            def run(view="plain"):  # one view: what the daemon pays per frame (its track alternates views)
                return embed(image, detector.detect(image)[0], view)
            times.append(measure(run, max(3, repeat // 5), warmup=1)["p50_ms"])
            photo_times.append(measure(lambda: run("both"), max(3, repeat // 5), warmup=1)["p50_ms"])
            vectors.setdefault(who, []).append(run("both"))
        out["ours"][name] = {"per_face_ms": round(float(np.mean(times)), 2),
                             "per_photo_both_views_ms": round(float(np.mean(photo_times)), 2), **distances(vectors)}
    try:
        import face_recognition
    except (Exception, SystemExit) as exc:  # it calls quit() when its models are missing
        if smoke_mode_on():
            raise SystemExit(f"face_recognition cannot be imported ({exc}): scripts/bootstrap installs it") from None
        out["face_recognition"] = {"error": f"not installed ({exc}); run scripts/bench"}
        return out
    vectors, times, missed = {}, [], []
    for who, p in photos:
        rgb = cv2.cvtColor(images[p], cv2.COLOR_BGR2RGB)
        def run():
            locations = face_recognition.face_locations(rgb)
            return face_recognition.face_encodings(rgb, locations[:1])[0] if locations else None
        if run() is None:
            missed.append(p)
            continue
        times.append(measure(run, max(3, repeat // 10), warmup=1)["p50_ms"])
        vectors.setdefault(who, []).append(run())
    out["face_recognition"] = {"per_face_ms": round(float(np.mean(times)), 2), **distances(vectors),
                               "faces_missed": missed,
                               "note": "HOG detector + dlib ResNet encoder; its documented match threshold is 0.6"}
    for ours in out["ours"].values():
        ours["speedup_vs_face_recognition"] = round(out["face_recognition"]["per_face_ms"] / ours["per_face_ms"], 1)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    stages = result["stages"]
    names = list(stages)
    axes[0].barh(names, [stages[n]["p50_ms"] for n in names], color="#4a90d9", label="p50")
    axes[0].barh(names, [stages[n]["p95_ms"] - stages[n]["p50_ms"] for n in names],
                 left=[stages[n]["p50_ms"] for n in names], color="#f5a623", label="p95")
    axes[0].set_xlabel("ms")
    axes[0].set_title("per-stage latency")
    axes[0].legend()
    fps = result["pipeline"]
    axes[1].bar(range(len(fps)), [fps[k]["fps"] for k in fps], color="#7ed321")
    axes[1].set_xticks(range(len(fps)), list(fps), rotation=60, ha="right", fontsize=7)
    axes[1].axhline(30, color="red", linestyle="--", label="30 fps target")
    axes[1].set_title("end-to-end fps")
    axes[1].legend()
    sizes = [int(k) for k in result["match"]]
    axes[2].loglog(sizes, [result["match"][str(s)]["p50_ms"] for s in sizes], "o-")
    axes[2].axhline(5, color="red", linestyle="--", label="5 ms target")
    axes[2].set_xlabel("identities")
    axes[2].set_ylabel("ms")
    axes[2].set_title("match time vs gallery size")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3, help="times each timed section runs (median and spread)")
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    repeat, frames = (2, 6) if smoke else (10, 30) if args.quick else (50, 150)
    runs = 1 if args.quick or smoke else args.runs
    threads = resolve_threads(args.threads)
    started = time.monotonic()
    result: dict = {"machine": machine(), "interpreter": INTERPRETER, "threads": threads, "runs": runs,
                    "spread": {}}
    host = result["machine"]
    print(f"host: {host['cores']} cores {host['machine']}, SIMD {' '.join(host['simd']) or 'unknown'}, {INTERPRETER} "
          f"with {threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gallery = work / "gallery.npz"
        from edge.identity.gallery import GalleryFile

        models: dict[str, tuple[Path, tuple[Path, ...], Path]] = {
            "": (DEFAULT_MODEL, DEFAULT_FUSED, gallery),  # the default identity
            "_facenet_alone": (DEFAULT_MODEL, (), work / "gallery-facenet.npz"),
            "_mobilefacenet_alone": (MOBILEFACENET, (), work / "gallery-mobilefacenet.npz")}
        for model, fuse_with, model_gallery in models.values():
            config = config_from_dict({"embedder": {"model": str(model), "fuse_with": [str(p) for p in fuse_with]},
                                       "matcher": {"gallery": str(model_gallery)}}, base_dir=ROOT)
            identifier = build_identifier(config, with_matcher=False)
            for who, photos in (("Barack Obama", ["obama-1.jpg", "obama-2.jpg"]), ("Joe Biden", ["biden-1.jpg"])):
                enrol(identifier, GalleryFile.from_config(config), who, [sample(p) for p in photos], None, 5)

        section("start-up and memory (the real daemon, fresh process)")
        for suffix, (model, fuse_with, model_gallery) in models.items():
            for kind in ("auto", "nearest"):
                key = "daemon" + suffix + ("" if kind == "auto" else "_nearest")
                result[key], result["spread"][key] = repeated(
                    lambda m=model, f=fuse_with, g=model_gallery, k=kind: startup_and_rss(g, work, m, k, f), runs)
                print(f"{suffix.strip('_').replace('_', ' ') or IDENTITY}, matcher.kind {kind}: {result[key]}")
        section("per-stage latency (ms)")
        result["stages"], result["spread"]["stages"] = repeated(lambda: stage_latencies(repeat, threads), runs)
        for name, s in result["stages"].items():
            low, high = result["spread"]["stages"][name]["p95_ms"]
            print(f"{name:40} p50 {s['p50_ms']:8.2f}  p95 {s['p95_ms']:8.2f}  (p95 over runs {low}-{high})")
        section(f"end-to-end pipeline on replayed frames (decode + detect + track + embed ({IDENTITY}) + match + decide)")
        result["pipeline"], result["spread"]["pipeline"] = repeated(lambda: pipeline_fps(frames, threads, gallery), runs)
        for name, s in result["pipeline"].items():
            print(f"{name:42} {s['fps']:7.1f} fps  p50 {s['p50_ms']:7.2f} ms  p95 {s['p95_ms']:7.2f} ms  "
                  f"faces/frame {s['faces_found_per_frame']}  ({s['detector']})")
    section("match time vs gallery size (nearest neighbour, ms)")
    sizes = GALLERY_SIZES[:2] if smoke else GALLERY_SIZES
    result["match"], result["spread"]["match"] = repeated(lambda: match_scaling(repeat, sizes), runs)
    for n, s in result["match"].items():
        low, high = result["spread"]["match"][n]["p95_ms"]
        print(f"{n:>8} identities  p50 {s['p50_ms']:7.3f}  p95 {s['p95_ms']:7.3f}  (p95 over runs {low}-{high})")
    section("face_recognition (dlib) side by side, same photos")
    result["face_recognition"], result["spread"]["face_recognition"] = repeated(
        lambda: compare_face_recognition(threads, repeat), runs)
    fr = result["face_recognition"]
    for precision, ours in fr["ours"].items():
        print(f"ours {precision:8} per face {ours['per_face_ms']:7.2f} ms  same max {ours['same_max']}  "
              f"different min {ours['different_min']}  margin {ours['margin']}"
              + (f"  {ours.get('speedup_vs_face_recognition')}x faster" if "speedup_vs_face_recognition" in ours else ""))
    if fr["face_recognition"] and "per_face_ms" in fr["face_recognition"]:
        d = fr["face_recognition"]
        print(f"face_recognition per face {d['per_face_ms']:7.2f} ms  same max {d['same_max']}  "
              f"different min {d['different_min']}  margin {d['margin']}  (its detector missed: "
              f"{', '.join(d['faces_missed']) or 'none'})")
    else:
        print(fr["face_recognition"])
    section(f"targets (median of {runs} run(s); worst run beside it)")
    result["targets"] = targets(result)
    for t in result["targets"]:
        if t["met"]:
            verdict = "met in every run" if t["met_in_every_run"] else "met by the median, not in every run"
        else:
            verdict = "NOT met, in some run only" if t["met_in_any_run"] else "NOT met in any run"
        print(f"{t['target']:52} {t['median']:>8} {t['unit']:3} (worst run {t['worst_run']})  {verdict}")
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write("bench", result)
    plot(result, path.with_suffix(".png"))
    print(f"\nwrote {path} and {path.with_suffix('.png')} in {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
