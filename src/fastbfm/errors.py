"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class FastBFMError(Exception):
    """A user-facing error: bad name, missing or corrupt file, empty dataset, diverged training."""
