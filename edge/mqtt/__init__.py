"""MQTT: the connection (status, Last Will, TLS, auth), the outbox publisher, and command intake."""
