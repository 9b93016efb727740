"""The one exception type the CLI turns into a single clear line (problem + fix), no traceback."""


class UserError(Exception):
    """Bad input or environment: the message names the problem and how to fix it."""
