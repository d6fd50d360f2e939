"""Error types of sanitas: every user-facing failure is a ``SanitasError`` with a one-line message.

The CLI catches it, prints ``sanitas: error: <message>`` on stderr and exits with status 2.
"""


class SanitasError(Exception):
    """A user-facing error (bad input, missing file, inconsistent checkpoint). One line, no traceback."""


class DatasetError(SanitasError):
    """A dataset folder is missing or malformed."""
