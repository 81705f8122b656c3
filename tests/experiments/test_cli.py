"""`recsys experiment report` and `recsys models promote --require-online-win` on the world of
tests/experiments/world.py: exposures in Redis (both backends), purchases in the campaign
database (SQLite, and PostgreSQL in a database of its own), versions in a tmp MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from cli.main import app
from cli.models import EXIT_NOT_PROMOTED
from engine.experiments.report import ExperimentReport
from serving.model_types import bundle_id
from tests.conftest import RedisBackend
from tests.experiments.world import Arm, write_world
from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.tracking import Tracker
from training.tracking_store import CHAMPION, MODEL_NAME, TAG_PROMOTION_FORCED

runner = CliRunner()
ENV = (
    "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RECSYS_DATA_TIMEZONE", "RECSYS_EXPERIMENT",
    "RECSYS_ATTRIBUTION_HOURS", "RECSYS_CHALLENGER_URI", "RECSYS_CHALLENGER_PERCENT",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'campaigns.db'}"
    url: str = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table("purchase_events"):
                conn.execute(sa.text("DELETE FROM purchase_events"))
    finally:
        engine.dispose()
    return url


def _connection(backend: RedisBackend, database: str) -> list[str]:
    return [
        "--redis-url",
        backend.url,
        "--redis-prefix",
        backend.prefix,
        "--database-url",
        database,
    ]


def test_report_writes_the_files_and_prints_the_table(
    redis_backend: RedisBackend, database_url: str, tmp_path: Path
) -> None:
    champion, challenger = Arm("champion", 30, 6, "b-1"), Arm("challenger", 20, 10, "b-2")
    write_world(
        redis_backend.client, redis_backend.prefix, database_url, [champion, challenger],
        zone="America/New_York",
    )  # fmt: skip
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "experiment", "report", "--days", "7", "--out", str(out),
            "--data-timezone", "America/New_York", "--experiment", "exp-cli",
            *_connection(redis_backend, database_url),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Conversion to a recommended item" in result.stdout
    assert "20.00%" in result.stdout
    assert "50.00%" in result.stdout
    assert "+30.00 pts *" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "experiment.png", "report.csv", "report.json", "report.md",
    ]  # fmt: skip
    report = ExperimentReport.model_validate_json((out / "report.json").read_text())
    assert report.experiment == "exp-cli"
    assert report.counts == {"champion": 30, "challenger": 20}
    assert report.metric("revenue_per_member").champion.value == pytest.approx(
        champion.revenue / 30
    )


def test_report_bad_input_exits_1(redis_backend: RedisBackend, tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["experiment", "report", "--data-dir", str(tmp_path), "--redis-url", redis_backend.url]
    )
    assert missing.exit_code == 1
    assert "no campaign database" in missing.stderr
    zone = runner.invoke(
        app,
        [
            "experiment", "report", "--data-timezone", "Mars/Olympus",
            *_connection(redis_backend, f"sqlite:///{tmp_path / 'c.db'}"),
        ],
    )  # fmt: skip
    assert zone.exit_code == 1
    assert "data_timezone" in zone.stderr
    assert runner.invoke(app, ["experiment", "report", "--days", "0"]).exit_code == 2


# -- the promotion gate ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """v1 (split A, ndcg 0.30) and v2 (split B, ndcg 0.20): the offline gate refuses v2."""
    folder = tmp_path_factory.mktemp("promote-online")
    tracker = fresh_tracker(migrated_store(), folder / "store")
    bundle = write_blend_bundle(folder / "bundle")
    for number, (ndcg, split) in enumerate([(0.30, "A"), (0.20, "B")], start=1):
        with tracker.start_run(f"cand-{number}") as run:
            run.log_metrics({"ndcg@10/all": ndcg})
            run.set_split_fingerprint(split)
            run.log_bundle(bundle)
    return tracker


@pytest.fixture
def tracker(store: Tracker) -> Tracker:
    """The store with v1 as champion, whatever an earlier test moved."""
    store.client.set_registered_model_alias(MODEL_NAME, CHAMPION, "1")
    return store


def _bundle(tracker: Tracker) -> str:
    return bundle_id(tracker.resolve_bundle(f"models:/{MODEL_NAME}/2"))


def promote(tracker: Tracker, backend: RedisBackend, database: str, *args: str) -> Result:
    return runner.invoke(
        app,
        [
            "models", "promote", "2", "--require-online-win", "--tracking-uri",
            tracker.tracking_uri, *_connection(backend, database), *args,
        ],
    )  # fmt: skip


def _world(tracker: Tracker, backend: RedisBackend, database: str, converters: int) -> None:
    arms = [Arm("champion", 60, 6, "b-old"), Arm("challenger", 60, converters, _bundle(tracker))]
    write_world(backend.client, backend.prefix, database, arms)


def test_promote_on_an_online_win(
    tracker: Tracker, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'c.db'}"
    # without the experiment the offline gate refuses v2 (another split)
    plain = runner.invoke(app, ["models", "promote", "2", "--tracking-uri", tracker.tracking_uri])
    assert plain.exit_code == EXIT_NOT_PROMOTED
    _world(tracker, redis_backend, database, converters=30)
    result = promote(tracker, redis_backend, database, "--min-members", "50")
    assert result.exit_code == 0, result.output
    assert "version 2 is now the champion: online win in experiment" in result.stdout
    assert tracker.champion().version == 2  # type: ignore[union-attr]
    tags = tracker.version(2).tags
    assert tags[TAG_PROMOTION_FORCED] == "false"
    assert "conversion_recommended challenger - champion +40.00 pts" in " ".join(
        result.stdout.split()
    )


def test_no_win_exits_3(tracker: Tracker, redis_backend: RedisBackend, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'c.db'}"
    _world(tracker, redis_backend, database, converters=8)
    result = promote(tracker, redis_backend, database, "--min-members", "50")
    assert result.exit_code == EXIT_NOT_PROMOTED, result.output
    assert "not promoted: the challenger is not significantly better" in result.stderr
    assert tracker.champion().version == 1  # type: ignore[union-attr]


def test_too_few_members_exits_3(
    tracker: Tracker, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'c.db'}"
    _world(tracker, redis_backend, database, converters=30)
    result = promote(tracker, redis_backend, database, "--min-members", "100")
    assert result.exit_code == EXIT_NOT_PROMOTED, result.output
    assert "too few exposed members" in result.stderr
    assert "each variant needs at least 100" in " ".join(result.stderr.split())
    assert tracker.champion().version == 1  # type: ignore[union-attr]


def test_another_bundle_or_force_is_refused(
    tracker: Tracker, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'c.db'}"
    arms = [Arm("champion", 60, 6, "b-old"), Arm("challenger", 60, 30, "b-something-else")]
    write_world(redis_backend.client, redis_backend.prefix, database, arms)
    result = promote(tracker, redis_backend, database, "--min-members", "50")
    assert result.exit_code == EXIT_NOT_PROMOTED, result.output
    assert "not by this version's bundle" in " ".join(result.stderr.split())
    forced = promote(tracker, redis_backend, database, "--force")
    assert forced.exit_code == 1
    assert "--force cannot be combined" in forced.stderr
    assert tracker.champion().version == 1  # type: ignore[union-attr]
    json.dumps(tracker.version(1).tags)  # the champion's record is untouched
