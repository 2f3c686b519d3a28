"""User-facing errors.

Anything a user can cause (a bad path, a malformed line, an unknown name, a split that leaves a
class empty) raises :class:`HgimbError` with a one-line message that names the offending
file/line/value and says what to do. The CLIs catch it, print ``error: <message>`` on stderr
and exit with status 2. Programming errors stay ordinary exceptions (tracebacks are for bugs).

Problems hgimb works around (a skipped bad row, an edgeless graph) are :class:`DataWarning` warnings,
shown as one line ``warning: <message>`` on stderr (through :mod:`warnings`, so they can be
filtered or turned into errors like any other warning).
"""
import warnings


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


class DataWarning(UserWarning):
    """A data problem hgimb worked around; printed as one line on stderr."""


_format_warning = warnings.formatwarning


def _one_line_format(message, category, filename, lineno, line=None):
    # the default format adds the path and source line of the warn() call: noise for a user
    # whose data is the subject, so DataWarning shows the message alone
    if isinstance(category, type) and issubclass(category, DataWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _one_line_format


def warn_data(message: str) -> None:
    """One-line warning about the user's data (``warning: <message>`` on stderr)."""
    warnings.warn(" ".join(str(message).split()), DataWarning, stacklevel=2)
