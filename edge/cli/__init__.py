"""The `facecheck` commands: they parse arguments and hand over to the layers below."""
