"""Keys and secrets: sealing, command signatures, and the one resolver every secret comes from."""
