"""Errors the CLI turns into one clear line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the valid choices."""
