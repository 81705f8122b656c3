"""Exit codes scripts can rely on, and the one place that turns known errors into them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from engine.errors import EngineError
from feature_store.errors import FeatureStoreError

#: 0: success. 1: the input data or configuration is bad (one-line reason on stderr).
#: 2: wrong usage of the command (typer/click's own code).
EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2

_err = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print a one-line reason and return the Exit to raise."""
    _err.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def known_errors() -> Iterator[None]:
    try:
        yield
    except (FeatureStoreError, EngineError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so that known errors exit 1 with their one-line message."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with known_errors():
            return fn(*args, **kwargs)

    return wrapper
