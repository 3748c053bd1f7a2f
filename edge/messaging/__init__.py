"""Everything that talks to the broker: the MQTT link, the durable outbox and its publisher, commands, the site
roster and Home Assistant discovery."""
