"""Home Assistant MQTT discovery: the door appears as a device with an attendance event and sensors."""

from __future__ import annotations

import json

from edge import __version__
from edge.config import Config
from edge.events import EVENT_TYPES


def discovery_messages(config: Config) -> dict[str, dict]:
    """topic -> config payload for every entity of this device."""
    base, device_id = config.base_topic, config.device_id
    prefix = config.homeassistant.discovery_prefix
    node = "facecheck_" + device_id.replace(".", "_").replace("-", "_")
    device = {"identifiers": [node], "name": f"FaceCheck {device_id}", "manufacturer": "FaceCheck Edge",
              "model": "FaceCheck Edge door camera", "sw_version": __version__}
    common = {"availability_topic": f"{base}/status", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    return {
        f"{prefix}/event/{node}/attendance/config": {
            **common, "name": "Attendance", "unique_id": f"{node}_attendance", "state_topic": f"{base}/events",
            "event_types": list(EVENT_TYPES),
            "value_template": "{{ {'event_type': value_json.type, 'name': value_json.name, "
                              "'person_id': value_json.person_id, 'score': value_json.score, "
                              "'event_id': value_json.event_id} | tojson }}",
            "icon": "mdi:door-open"},
        f"{prefix}/sensor/{node}/fps/config": {
            **common, "name": "Frames per second", "unique_id": f"{node}_fps", "state_topic": f"{base}/health",
            "value_template": "{{ value_json.fps }}", "unit_of_measurement": "fps", "state_class": "measurement",
            "entity_category": "diagnostic"},
        f"{prefix}/sensor/{node}/outbox_depth/config": {
            **common, "name": "Outbox depth", "unique_id": f"{node}_outbox_depth", "state_topic": f"{base}/health",
            "value_template": "{{ value_json.outbox_depth }}", "unit_of_measurement": "events",
            "state_class": "measurement", "entity_category": "diagnostic"},
        f"{prefix}/sensor/{node}/roster_version/config": {
            **common, "name": "Roster version", "unique_id": f"{node}_roster_version",
            "state_topic": f"{base}/health", "value_template": "{{ value_json.roster.version }}",
            "entity_category": "diagnostic"},
    }


def announce(client, config: Config) -> None:
    for topic, payload in discovery_messages(config).items():
        client.publish(topic, json.dumps(payload), qos=1, retain=True)
