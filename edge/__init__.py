"""FaceCheck Edge: touchless attendance at the door, decided on-device."""

__version__ = "0.2.0"

import os as _os

# OpenCV's own warnings (a missing /dev/video0 every retry) drown the daemon's log; ours say it better.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
