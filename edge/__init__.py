"""FaceCheck Edge: touchless attendance at the door, decided on-device."""

__version__ = "0.1.0"
