"""User-facing errors: one line that names the key, file, row or sample at fault.

The CLI prints ``str(error)`` for any :class:`RlvrError` and exits non-zero; the traceback
is shown only with ``--debug``. Anything else that escapes is a bug in rlvr, not bad input.
"""


def one_line(err: BaseException, limit: int = 200) -> str:
    """``err``'s message on one line, at most ``limit`` characters (for messages that quote a library's)."""
    return " ".join(str(err).split())[:limit]


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (a library's error often goes on with a traceback), or its
    type's name when it has no message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class RlvrError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(RlvrError):
    """A recipe or override is invalid (unknown key, wrong type, bad combination)."""


class DataError(RlvrError):
    """A task's data is missing, empty or malformed (names the file and line)."""


class ModelError(RlvrError):
    """A model cannot be found or loaded."""


class RewardError(RlvrError):
    """A reward function raised or returned a non-finite value (names the sample)."""


class TrainingError(RlvrError):
    """Training cannot go on safely (non-finite loss, broken checkpoint)."""
