"""The daemon as a service: the main loop, the one place that wires the stages from the config (assembly), reload,
health, systemd notify and logging."""
