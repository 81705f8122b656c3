"""Progress display for long CLI steps (rich), kept out of the library code.

Library functions take an optional ``progress: Callable[[str], None]`` that they call with a
short description as each step starts; :func:`steps` turns those calls into a live display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True, log_path=False)


@contextmanager
def steps(title: str) -> Iterator[Callable[[str], None]]:
    """Show a spinner with the current step and log each finished step with its duration."""
    started = time.perf_counter()
    state: dict[str, object] = {"name": None, "t": started}
    with console.status(f"[bold]{title}[/bold]") as status:

        def step(name: str) -> None:
            now = time.perf_counter()
            if state["name"] is not None:
                console.log(f"{state['name']} [dim]({now - float(state['t']):.1f}s)[/dim]")  # type: ignore[arg-type]
            state["name"], state["t"] = name, now
            status.update(f"[bold]{title}[/bold]: {name}")

        yield step
        now = time.perf_counter()
        if state["name"] is not None:
            console.log(f"{state['name']} [dim]({now - float(state['t']):.1f}s)[/dim]")  # type: ignore[arg-type]
    console.log(f"[green]{title} done[/green] in {time.perf_counter() - started:.1f}s")
