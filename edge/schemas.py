"""The JSON Schemas of every MQTT payload, shipped in the package (edge/schemas/*.json)."""

from __future__ import annotations

import json
from importlib import resources

NAMES = ("event", "status", "health", "command", "command-result", "roster-manifest", "roster-chunk",
         "roster-result")


def load_schema(name: str) -> dict:
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    return json.loads(resources.files("edge").joinpath("schemas", f"{name}.schema.json").read_text())
