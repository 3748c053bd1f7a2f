"""One error hierarchy: each kind carries the exit code the CLI returns for it (README, Using it: 2 = bad usage,
config or input, naming the file, key or value and the fix; 1 = any other failure)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class FaceCheckError(Exception):
    """A failure the user is told about in one line, never a traceback."""

    exit_code = EXIT_FAILURE


class BadInputError(FaceCheckError):
    """Something the operator gave is wrong (a file, a config key, a model, an image): exit 2."""

    exit_code = EXIT_USAGE


class InputError(BadInputError):
    """Bad user input (a path, an image, a name)."""
