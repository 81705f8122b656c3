"""Training configs: the packaged ones load; bad ones fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import CONFIG_DIR, ConfigError, load_config

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
        ("[weights.tier]\ngold = -1.0\n", r"weights\.tier\.gold: -1\.0: negative weights"),
        ("[weights]\namount = -0.5\n", r"weights\.amount: -0\.5: negative weights"),
        ("[weights.tags]\nboost = -2\n", r"weights\.tags\.boost: -2: negative weights"),
        (
            '[weights.tags.multipliers]\n"loves-beauty" = -1.0\n',
            r"weights\.tags\.multipliers\.loves-beauty: -1\.0: negative",
        ),
        ("[blend]\nbuy_again = -0.1\n", r"blend\.buy_again: -0\.1: negative weights"),
        ("[weights]\nhalf_lif_days = 30\n", r"weights\.half_lif_days: unknown key"),
        ("epochs = 3\n", r"train\.toml: epochs: unknown key"),
        ('[weights]\nquantity = "sqrt"\n', r"weights\.quantity: 'sqrt' is not one of"),
        ("[weights.bm25]\nb = 1.5\n", r"weights\.bm25\.b: 1\.5: must be <= 1"),
        ("[model.params]\nfactor = 64\n", r"model\.params: model 'als': unknown parameter"),
        ("[model.params]\nfactors = 0\n", r"model\.params: .*factors=0"),
        ('[model]\nkind = "item_knn"\n', r"model\.kind: 'item_knn' has no member and item"),
        ('[evaluation]\nmetric = "ndcg@7/all"\n', r"evaluation\.metric: 'ndcg@7/all' is not"),
        ("[evaluation]\nks = [0, 10]\n", r"evaluation\.ks: values must be >= 1"),
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
        ("[bundle]\nitem_index = 3\n", r"bundle\.item_index: must be a non-empty string"),
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
