"""Errors a user can cause (config, grid, cluster address): printed as one line, no traceback."""


class SweepError(Exception):
    """A problem with what the user asked for; the message is the whole report."""
