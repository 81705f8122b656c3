"""`recsys`: the command line of the engine. Each command group lives in its own module.

Importing anything under ``cli`` first runs cli/__init__.py, which sets thread defaults.
"""

from __future__ import annotations

import typer

from cli import data, demo, features

app = typer.Typer(
    name="recsys",
    help="Recommendation and personalization engine for retail membership programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("demo")(demo.demo)
app.add_typer(features.app, name="features")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
