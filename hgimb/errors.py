"""User-facing errors.

Anything a user can cause (a bad path, a malformed line, an unknown name, a split that leaves a
class empty) raises :class:`HgimbError` with a one-line message that names the offending
file/line/value and says what to do. The CLIs catch it, print ``error: <message>`` on stderr
and exit with status 2. Programming errors stay ordinary exceptions (tracebacks are for bugs).
"""


class HgimbError(ValueError):
    """A problem with the user's input, reported as one clear line."""

    exit_code = 2


def did_you_mean(value: str, valid) -> str:
    """A short 'valid names are ...' suffix for unknown-name errors."""
    import difflib

    valid = sorted(valid)
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; valid names: {', '.join(valid)}"
