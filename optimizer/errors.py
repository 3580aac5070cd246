"""Errors the CLI turns into one clear line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the valid choices."""


class CheckFailed(Exception):
    """A self-check failed (e.g. an exported model does not score what was recorded)."""
