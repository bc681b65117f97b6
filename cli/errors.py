"""CLI errors: printed as one line on stderr, never with a traceback."""

from __future__ import annotations

import click


class CliError(click.ClickException):
    """A failure to report to the user; ``exit_code`` 1 by default, 2 for usage, 3 for auth."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it as a class variable

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
