"""`recsys`: the command line of the engine. Each command group lives in its own module.

Importing anything under ``cli`` first runs cli/__init__.py, which sets thread defaults.
"""

from __future__ import annotations

import typer

from cli import (
    audience,
    campaign,
    data,
    demo,
    experiment,
    features,
    members,
    models,
    serve,
    train,
    tune,
    value,
)

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
app.add_typer(models.app, name="models")
app.command("train")(train.train_cmd)
app.command("recommend")(train.recommend_cmd)
app.command("tune")(tune.tune_cmd)
app.command("serve")(serve.serve)
app.add_typer(serve.keys_app, name="api-key")
app.add_typer(audience.app, name="audience")
app.add_typer(campaign.app, name="campaign")
app.add_typer(experiment.app, name="experiment")
app.add_typer(members.app, name="members")
app.add_typer(value.app, name="value")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
