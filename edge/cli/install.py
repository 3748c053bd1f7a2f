"""The install steps for a Raspberry Pi or Jetson, printed by `facecheck install-service --dry-run`."""

from __future__ import annotations

REPO_URL_NOTE = "a checkout of this repository (or its sdist) at SRC"


def install_steps(prefix: str = "/opt/facecheck") -> str:
    return f"""# FaceCheck Edge: install as a systemd service (run as root; SRC = {REPO_URL_NOTE})
set -e
apt-get install -y python3-venv                       # Pi OS Bookworm: 3.11; JetPack 6: 3.10
useradd --system --home-dir /var/lib/facecheck --shell /usr/sbin/nologin --groups video facecheck || true
python3 -m venv {prefix}/venv                           # on a Pi add --system-site-packages for picamera2
{prefix}/venv/bin/pip install SRC                      # the lean runtime: no TensorFlow, no mediapipe
# the model bundle, built once on any machine with `scripts/bootstrap` (or `facecheck-convert bundle --out models`
# and `facecheck-convert mobilefacenet --out models`, converters extra), then copied; the daemon checks every sha256
install -d -m 0755 /var/lib/facecheck/models
install -m 0644 SRC/models/*.tflite SRC/models/*.tflite.json /var/lib/facecheck/models/
install -d -m 0750 -g facecheck /etc/facecheck /etc/facecheck/credentials
install -m 0640 -g facecheck SRC/config.yaml /etc/facecheck/config.yaml
#   edit /etc/facecheck/config.yaml: device_id, camera, mqtt.host, models.dir: /var/lib/facecheck/models,
#   embedder.model: /var/lib/facecheck/models/facenet-keras-int8full.tflite, embedder.fuse_with:
#   [/var/lib/facecheck/models/mobilefacenet-float32.tflite], matcher.gallery / outbox.path under /var/lib/facecheck
install -m 0600 /dev/stdin /etc/facecheck/credentials/mqtt-password <<< 'the broker password'
install -m 0644 SRC/systemd/facecheck.service /etc/systemd/system/facecheck.service
systemctl daemon-reload
systemctl enable --now facecheck
{prefix}/venv/bin/facecheck doctor -c /etc/facecheck/config.yaml
journalctl -u facecheck -f
"""
