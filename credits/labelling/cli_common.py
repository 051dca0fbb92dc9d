"""What the ``credits labelling`` commands share: their options, list-by-default
groups, request models read from options, and JSON output."""

from __future__ import annotations

from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from credits.cli_support import fail, first_problem

M = TypeVar("M", bound=BaseModel)
AS_OPTION = click.option(
    "--as", "as_email", required=True, help="Email of the user making the change."
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON (micro-credits).")


class ListByDefault(click.Group):
    """A group whose arguments go to its ``list`` command unless they name another."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def parse_model(model: type[M], values: dict[str, Any]) -> M:
    """``values`` as ``model``, or one line naming the first field it refuses."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        fail(first_problem(error))


def echo_json(model: BaseModel) -> None:
    click.echo(model.model_dump_json(indent=2))
