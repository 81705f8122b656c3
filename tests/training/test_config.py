"""Training configs: the packaged ones load; bad ones fail naming the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

import feature_store.errors
import training.config_toml
from feature_store.config_model import validate
from training.config import CONFIG_DIR, ConfigError, TrainConfig, load_config
from training.config_toml import TrainConfigFile

TIERS = ("regular", "silver", "gold", "platinum", "diamond")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["default", "online_retail"])
def test_packaged_configs_load(name: str) -> None:
    config = load_config(CONFIG_DIR / f"{name}.toml")
    assert config.model.kind == "als"
    assert config.evaluation.ks == (5, 10, 20)


def test_every_weight_is_a_param() -> None:
    config = load_config(CONFIG_DIR / "default.toml")
    params = config.params()
    for tier in TIERS:
        assert params[f"weights.tier.{tier}"] == config.weights.tier[tier]
    assert params["weights.tags.boost"] == 1.5
    assert params["weights.half_life_days"] == config.weights.half_life_days
    assert params["weights.quantity"] == "log1p"
    assert params["weights.bm25.enabled"] is True
    assert params["blend.buy_again"] == config.blend.weights.buy_again
    assert params["model.params.factors"] == 64


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), tiers=TIERS)
    assert config.weights.half_life_days == 0.0
    assert config.blend.weights.candidates == 200
    assert config.baselines == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[weights.tier]\ngolden = 1.2\n", r"weights\.tier\.golden: unknown tier"),
        ("[weights.tier]\ngold = -1.0\n", r"weights\.tier\.gold: must be >= 0, got -1\.0"),
        ("[weights]\namount = -0.5\n", r"weights\.amount: must be >= 0, got -0\.5"),
        ("[weights.tags]\nboost = -2\n", r"weights\.tags\.boost: must be >= 0, got -2$"),
        (
            '[weights.tags.multipliers]\n"loves-beauty" = -1.0\n',
            r"weights\.tags\.multipliers\.loves-beauty: must be >= 0, got -1\.0",
        ),
        ("[blend]\nbuy_again = -0.1\n", r"blend\.buy_again: must be >= 0, got -0\.1"),
        ("[weights]\nhalf_lif_days = 30\n", r"weights\.half_lif_days: unknown key"),
        ("epochs = 3\n", r"train\.toml: epochs: unknown key"),
        ('[weights]\nquantity = "sqrt"\n', r"weights\.quantity: 'sqrt' is not one of"),
        ("[weights.bm25]\nb = 1.5\n", r"weights\.bm25\.b: must be <= 1, got 1\.5"),
        ("[model.params]\nfactor = 64\n", r"model\.params: model 'als': unknown parameter"),
        ("[model.params]\nfactors = 0\n", r"model\.params: .*factors=0"),
        ('[model]\nkind = "item_knn"\n', r"model\.kind: 'item_knn' has no member and item"),
        ('[evaluation]\nmetric = "ndcg@7/all"\n', r"evaluation\.metric: 'ndcg@7/all' is not"),
        ("[evaluation]\nks = [0, 10]\n", r"evaluation\.ks\[0\]: must be >= 1, got 0"),
        ('[split]\ncutoff = "2025-13-01"\n', r"split\.cutoff: must be a date"),
        (
            "[split]\ncutoff = 2025-12-01\ntest_end = 2025-11-01\n",
            r"split\.test_end: 2025-11-01 is before the cutoff",
        ),
        (
            '[[baselines]]\nname = "p"\nkind = "popularity"\n[[baselines]]\nname = "p"\nkind = "buy_again"\n',
            r"baselines\[1\]\.name: baseline 'p' is defined twice",
        ),
        (
            '[[baselines]]\nname = "x"\nkind = "popularity"\nweighting = "heavy"\n',
            r"baselines\[0\]\.weighting: 'heavy' is not one of",
        ),
        ("[bundle]\nitem_index = 3\n", r"bundle\.item_index: 3 is not one of auto, exact, hnsw"),
        ("[weights\n", r"not valid TOML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), tiers=TIERS)


def test_tiers_come_from_the_feature_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    default_policy = Path(__file__).resolve().parents[2] / "feature_store/policies/default.toml"
    policy.write_text(
        default_policy.read_text(encoding="utf-8").replace('"diamond"', '"black"'),
        encoding="utf-8",
    )
    path = write(tmp_path, '[features]\npolicy = "policy.toml"\n[weights.tier]\nblack = 2.0\n')
    assert load_config(path).weights.tier["black"] == 2.0
    bad = write(tmp_path, '[features]\npolicy = "policy.toml"\n[weights.tier]\ndiamond = 2.0\n')
    with pytest.raises(ConfigError, match=r"weights\.tier\.diamond: unknown tier .*black"):
        load_config(bad)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")


# -- the config file's models ------------------------------------------------------------------


def test_one_config_error_class() -> None:
    assert ConfigError is feature_store.errors.ConfigError
    assert training.config_toml.ConfigError is feature_store.errors.ConfigError


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        # an unknown key
        (
            "[blend]\ntrending_dayz = 7\n",
            "blend.trending_dayz",
            "unknown key (valid keys here: buy_again, buy_again_half_life_days, candidates, "
            "embedding, trending, trending_candidates, trending_days)",
        ),
        (
            "[tracking]\nregistr = false\n",
            "tracking.registr",
            "unknown key (valid keys here: enabled, experiment, promote, register)",
        ),
        # a wrong type (TOML values are taken as written: "50" is no integer, 1 is no boolean)
        (
            '[bundle]\nprecomputed_candidates = "50"\n',
            "bundle.precomputed_candidates",
            "must be an integer, got '50'",
        ),
        ("[tracking]\npromote = 1\n", "tracking.promote", "must be true or false, got 1"),
        (
            '[[baselines]]\nname = "x"\nkind = "als"\nparams = { factors = [64] }\n',
            "baselines[0].params.factors",
            "must be a string, number or boolean, got [64]",
        ),
        ("[model]\nkind = 3\n", "model.kind", "must be a string, got 3"),
        # a value out of range
        ("[evaluation]\nserved_share = 1.5\n", "evaluation.served_share", "must be <= 1, got 1.5"),
        ("[split]\ntest_days = 0\n", "split.test_days", "must be >= 1, got 0"),
        (
            '[search]\nobjective = ["ndcg@10/all", "ndcg@10/old"]\n',
            "search.objective[1]",
            "'ndcg@10/old' is not NAME@K/VARIANT (e.g. ndcg@10/all)",
        ),
    ],
)
def test_a_bad_key_is_named_by_file_and_dotted_path(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, tiers=TIERS)
    assert str(err.value) == f"{path}: {where}: {problem}"


def test_every_problem_of_a_file_is_named_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[weights]\namount = -1\n[bundle]\nitem_index = "fast"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, tiers=TIERS)
    assert str(err.value).splitlines() == [
        f"{path}: weights.amount: must be >= 0, got -1",
        f"{path}: bundle.item_index: 'fast' is not one of auto, exact, hnsw, none",
    ]


@pytest.mark.parametrize("name", ["default", "online_retail"])
def test_a_valid_config_round_trips_through_its_model(tmp_path: Path, name: str) -> None:
    source = CONFIG_DIR / f"{name}.toml"
    config = load_config(source)
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    checked = validate(TrainConfigFile, data, source, context={"path": source, "tiers": None})
    path = write(tmp_path, tomli_w.dumps(checked.model_dump(by_alias=True, exclude_none=True)))
    again = load_config(path)
    assert again.source == path
    assert again.replace(source=source) == config


def test_absent_keys_take_the_dataclass_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path, tiers=TIERS) == TrainConfig(source=path)
