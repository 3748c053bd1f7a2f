"""Frame sources that run here (replay, video file) and the capture thread's behaviour."""

import time
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from edge.camera import CaptureThread, SourceError, SourceUnavailable, open_source
from edge.camera.opencv_source import OpenCvSource, capture_target
from edge.camera.replay import ReplaySource
from edge.config import FileCamera, GStreamerCamera, ReplayCamera, UrlCamera, V4L2Camera


def numbered_frames(folder: Path, count: int, size=(64, 48)) -> Path:
    """Frames whose pixel value encodes their index, so order and identity can be checked."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), np.full((size[1], size[0], 3), i * 10 % 256, np.uint8))
    return folder


def value(image: np.ndarray) -> int:
    return int(image[0, 0, 0])


def test_replay_folder_in_name_order_with_synthetic_clock(tmp_path):
    folder = numbered_frames(tmp_path / "frames", 5)
    (folder / "notes.txt").write_text("not an image")
    source = ReplaySource(ReplayCamera(kind="replay", path=str(folder), fps=20, realtime=False))
    source.open()
    got = []
    while (item := source.read()) is not None:
        got.append((value(item[0]), item[1]))
    assert got == [(0, 0.0), (10, 0.05), (20, 0.1), (30, 0.15), (40, 0.2)]


def test_replay_glob_and_loop(tmp_path):
    folder = numbered_frames(tmp_path / "frames", 4)
    source = ReplaySource(ReplayCamera(kind="replay", path=str(folder / "f00[13].png"), loop=True, realtime=False))
    source.open()
    assert [value(source.read()[0]) for _ in range(5)] == [10, 30, 10, 30, 10]


def test_replay_realtime_paces_at_fps(tmp_path):
    folder = numbered_frames(tmp_path / "frames", 6)
    source = ReplaySource(ReplayCamera(kind="replay", path=str(folder), fps=50, realtime=True))
    source.open()
    start = time.monotonic()
    while source.read() is not None:
        pass
    assert time.monotonic() - start >= 5 / 50 * 0.9


def test_replay_without_images_is_a_config_error(tmp_path):
    source = ReplaySource(ReplayCamera(kind="replay", path=str(tmp_path)))
    with pytest.raises(SourceError, match="no images"):
        source.open()


def test_video_file_source_reads_every_frame_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    source = OpenCvSource(FileCamera(kind="file", path=path, realtime=False))
    source.open()
    frames = []
    while (item := source.read()) is not None:
        frames.append(item[0])
    assert len(frames) == 6
    assert [round(float(f.mean()) / 40) for f in frames] == [0, 1, 2, 3, 4, 5]
    looping = OpenCvSource(FileCamera(kind="file", path=path, loop=True, realtime=False))
    looping.open()
    assert sum(looping.read() is not None for _ in range(14)) == 14


def test_video_file_errors_name_the_path(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        OpenCvSource(FileCamera(kind="file", path=tmp_path / "nope.mp4")).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="junk.mp4"):
        OpenCvSource(FileCamera(kind="file", path=junk)).open()


def test_capture_targets_pick_the_right_backend():
    assert capture_target(V4L2Camera(kind="v4l2", device="2")) == (2, cv2.CAP_V4L2)
    assert capture_target(V4L2Camera(kind="v4l2", device="/dev/video1")) == ("/dev/video1", cv2.CAP_V4L2)
    url = "rtsp://user:pw@192.0.2.7:554/h264?channel=1"
    assert capture_target(UrlCamera(kind="url", url=url)) == (url, cv2.CAP_FFMPEG)
    pipe = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280 ! nvvidconv ! videoconvert ! appsink drop=1"
    assert capture_target(GStreamerCamera(kind="gstreamer", pipeline=pipe)) == (pipe, cv2.CAP_GSTREAMER)


def test_gstreamer_without_support_says_what_to_do():
    from edge.camera.opencv_source import has_gstreamer

    if has_gstreamer():
        pytest.skip("this OpenCV build has GStreamer; the refusal path cannot be shown")
    source = OpenCvSource(GStreamerCamera(kind="gstreamer", pipeline="videotestsrc ! appsink"))
    with pytest.raises(SourceError, match="no GStreamer support"):
        source.open()


def test_open_source_picks_the_class(tmp_path):
    assert isinstance(open_source(ReplayCamera(kind="replay", path=str(tmp_path))), ReplaySource)
    assert isinstance(open_source(UrlCamera(kind="url", url="http://192.0.2.1/mjpg")), OpenCvSource)


class FakeDevice:
    """Stands in for a camera device node (none exists here): fails to open, then vanishes mid-stream.

    It produces frames as fast as asked, like a live camera, so the capture thread must drop old ones.
    """

    name = "fake-device"
    realtime = True

    def __init__(self, failures_before_open=2, lose_after=30, frames_total=80):
        self.failures_before_open = failures_before_open
        self.lose_after = lose_after
        self.frames_total = frames_total
        self.opens = 0
        self.produced = 0
        self._since_open = 0

    def open(self):
        if self.failures_before_open > 0:
            self.failures_before_open -= 1
            raise SourceUnavailable("no such device")
        self.opens += 1
        self._since_open = 0

    def read(self):
        if self.produced >= self.frames_total:
            return None
        if self.opens == 1 and self._since_open >= self.lose_after:
            raise SourceUnavailable("device unplugged")
        self._since_open += 1
        self.produced += 1
        time.sleep(0.001)
        return np.full((4, 4, 3), self.produced % 256, np.uint8), None

    def close(self):
        pass


def test_capture_keeps_only_the_newest_frame_and_reconnects():
    device = FakeDevice()
    capture = CaptureThread(device, reconnect_initial_s=0.01, reconnect_max_s=0.02).start()
    taken = []
    while not capture.finished:
        frame = capture.get(timeout=1)
        if frame is not None:
            taken.append(frame)
            time.sleep(0.02)  # a slow inference loop
    capture.stop()
    assert device.opens == 2, "reopened after the device vanished"
    assert capture.reconnects == 1
    assert capture.frames_captured == 80
    assert capture.frames_dropped > 0
    assert len(taken) + capture.frames_dropped == 80
    values = [value(f.image) for f in taken]
    assert values == sorted(values), "never an older frame after a newer one"
    assert values[-1] == 80, "the last frame delivered is the newest"


def test_capture_hands_over_every_frame_from_a_non_realtime_replay(tmp_path):
    folder = numbered_frames(tmp_path / "frames", 20)
    capture = CaptureThread(ReplaySource(ReplayCamera(kind="replay", path=str(folder), realtime=False))).start()
    got = []
    while not capture.finished:
        frame = capture.get(timeout=1)
        if frame is not None:
            got.append(frame.index)
            time.sleep(0.005)
    capture.stop()
    assert got == list(range(20))
    assert capture.frames_dropped == 0


def test_capture_reports_a_source_error_and_ends(tmp_path):
    capture = CaptureThread(ReplaySource(ReplayCamera(kind="replay", path=str(tmp_path / "empty")))).start()
    assert capture.get(timeout=2) is None
    capture.stop()
    assert isinstance(capture.error, SourceError)
    assert capture.finished


def test_capture_stop_is_prompt_while_waiting_for_a_device():
    device = FakeDevice(failures_before_open=10_000)
    capture = CaptureThread(device, reconnect_initial_s=5, reconnect_max_s=5).start()
    time.sleep(0.1)
    start = time.monotonic()
    capture.stop()
    assert time.monotonic() - start < 1.0


class StubPicamera2:
    """Stands in for picamera2 (no Pi camera here): hands out a frame in picamera2's documented byte order
    for the format it was configured with ("RGB888" = B, G, R in memory; "BGR888" = R, G, B)."""

    opened: ClassVar[list["StubPicamera2"]] = []
    fail_start = False

    def __init__(self, index):
        self.index, self.format, self.closed = index, None, False
        StubPicamera2.opened.append(self)

    def create_video_configuration(self, main, controls):
        return {"main": main, "controls": controls}

    def configure(self, configuration):
        self.format = configuration["main"]["format"]
        self.size = configuration["main"]["size"]

    def start(self):
        if StubPicamera2.fail_start:
            raise RuntimeError("Camera frontend has timed out!")

    def capture_array(self, stream):
        w, h = self.size
        red = {"RGB888": (0, 0, 255), "BGR888": (255, 0, 0)}[self.format]  # a pure red scene
        return np.tile(np.array(red, np.uint8), (h, w, 1))

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_pi_camera_frames_reach_the_pipeline_in_bgr_and_a_failed_start_frees_the_camera(monkeypatch):
    import sys
    import types

    from edge.camera.base import SourceUnavailable
    from edge.camera.picamera import Picamera2Source
    from edge.config import PiCamera

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=StubPicamera2))
    source = Picamera2Source(PiCamera(kind="picamera2", width=64, height=48))
    source.open()
    image, _ = source.read()
    assert image.shape == (48, 64, 3)
    assert tuple(image[0, 0]) == (0, 0, 255), "red arrives as OpenCV's B, G, R = (0, 0, 255)"
    source.close()
    StubPicamera2.fail_start = True
    try:
        with pytest.raises(SourceUnavailable, match="timed out"):
            source.open()
        assert StubPicamera2.opened[-1].closed, "the camera is closed before the capture thread retries"
    finally:
        StubPicamera2.fail_start = False
