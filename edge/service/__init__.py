"""The daemon as a service: the main loop, the one place that wires the stages from the config, reload, health, systemd notify and logging."""
