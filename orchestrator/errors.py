"""The one error type a user sees for bad input: every problem on its own line.

The CLI catches :class:`UsageError`, prints its lines to stderr and exits with status 2,
so no traceback ever reaches a user for a spec, flag, data or result-file mistake.
"""
from __future__ import annotations


class UsageError(Exception):
    """Bad input. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
