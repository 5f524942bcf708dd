"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class StanceError(Exception):
    """A user-facing error: the message names the file and the problem."""
