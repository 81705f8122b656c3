"""The audience definition document (engine.audience_document): one pydantic model for the
engine, the CLI and the API; its errors name the dotted path and say what is wrong."""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from typing import Any

import pytest

from engine.audience import DefinitionError, parse_definition
from engine.audience_document import MAX_DAYS, AudienceDefinition, read_document
from engine.errors import InvalidInputError

TEA = {"items": ["tea1"]}
ONE = {"top_n": 1}


def message(document: Any) -> str:
    with pytest.raises(DefinitionError) as info:
        parse_definition(document)
    assert isinstance(info.value, InvalidInputError)
    assert str(info.value) == f"{info.value.field}: {info.value.message}"
    return str(info.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (["seed"], "definition: must be an object, got list"),
        ({"seed": TEA}, "size: required: top_n, min_score and/or top_percent"),
        ({"seed": None, "size": ONE}, "seed: required: items, categories, item_tags or members"),
        ({"seed": "tea1", "size": ONE}, "seed: must be an object, got str"),
        (
            {"seed": TEA, "size": ONE, "colour": "red"},
            "colour: unknown key; allowed here: name, seed, filters, exclude, size, holdout",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"tags": {"some": []}}},
            "filters.tags.some: unknown key; allowed here: any, all, none",
        ),
        ({"seed": TEA, "size": {"top_n": 0}}, "size.top_n: must be greater than or equal to 1"),
        ({"seed": TEA, "size": {"top_n": True}}, "size.top_n: must be a whole number, got True"),
        ({"seed": {"items": ["a", " "]}, "size": ONE}, "seed.items[1]: must be a non-empty string"),
        (
            {"seed": {"items": ["a"], "members": ["m"]}, "size": ONE},
            "seed.members: a lookalike seed (members) cannot be combined",
        ),
        ({"seed": {}, "size": ONE}, "seed: is empty"),
        ({"seed": TEA, "size": {"rank_by": "score"}}, "size: give at least one of top_n"),
        (
            {"seed": TEA, "size": ONE, "filters": {"points": {"min": 10, "max": 5.5}}},
            "filters.points: min 10 is greater than max 5.5",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"clv": {"min": 9, "max": 1}}},
            "filters.clv: min 9 is greater than max 1",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"clv": {"top_percent": 0}}},
            "filters.clv.top_percent: must be greater than 0, got 0",
        ),
        (
            {
                "seed": TEA,
                "size": ONE,
                "filters": {"joined": {"after": "2024-01-01", "before": "2023-01-01"}},
            },
            "filters.joined: after (2024-01-01) must be earlier than before (2023-01-01)",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"tags": {"all": ["v{x}"], "none": ["v{x}"]}}},
            "filters.tags: tag 'v{x}' is in both 'all' and 'none'",
        ),
        (
            {"seed": TEA, "size": ONE, "holdout": {"percent": 100}},
            "holdout.percent: must be less than 100, got 100: 0 measures nothing and 100 contacts "
            "nobody",
        ),
        ({"seed": TEA, "size": ONE, "holdout": {}}, "holdout.percent: required: the share (%)"),
        ({"seed": TEA, "size": ONE, "holdout": {"percent": 5, "salt": " "}}, "holdout.salt: must"),
        ({"seed": TEA, "size": ONE, "name": 5}, "name: must be a valid string, got 5"),
        (
            {"seed": TEA, "size": ONE, "filters": {"lifecycle": ["dormant"]}},
            "filters.lifecycle[0]: must be 'new', 'active', 'at_risk' or 'churned', got 'dormant'",
        ),
        (
            {"seed": TEA, "size": ONE, "exclude": {"contacted_within_days": MAX_DAYS + 1}},
            f"exclude.contacted_within_days: must be less than or equal to {MAX_DAYS}",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"joined": {"after": "20240101"}}},
            "filters.joined.after: must be a date YYYY-MM-DD, got '20240101'",
        ),
        (
            {"seed": TEA, "size": ONE, "filters": {"joined": {"after": datetime(2024, 1, 1)}}},
            "filters.joined.after: must be a date YYYY-MM-DD without a time",
        ),
    ],
)
def test_errors_name_the_path_and_what_is_wrong(document: Any, expected: str) -> None:
    assert message(document).startswith(expected)


def test_long_values_are_shortened_in_messages() -> None:
    text = message({"seed": {"items": "x" * 1000}, "size": ONE})
    assert text.startswith("seed.items: must be a valid list, got 'xxx")
    assert len(text) < 100


def test_every_culprit_is_listed_first_one_first() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition({"seed": {"items": [""]}, "size": {"top_n": 0}, "filtres": {}})
    fields = [e["field"] for e in info.value.errors]
    assert fields == ["seed.items[0]", "size.top_n", "filtres"]
    assert info.value.field == "seed.items[0]"
    assert info.value.errors[0]["message"] == info.value.message


def test_a_single_error_lists_itself() -> None:
    error = DefinitionError("seed", "unknown")
    assert error.errors == [{"field": "seed", "message": "unknown"}]


def test_json_and_toml_documents_read_alike() -> None:
    toml = tomllib.loads(
        """
[seed]
items = ["a", "b", "a"]
[filters]
birth_months = [12, 12]
joined = { after = 2023-01-01 }
[size]
top_n = 5
"""
    )
    json_like = {
        "seed": {"items": ["a", "b", "a"], "members": None},
        "filters": {"birth_months": [12.0, 12], "joined": {"after": "2023-01-01"}},
        "size": {"top_n": 5.0},
    }
    from_toml, from_json = parse_definition(toml), parse_definition(json_like)
    assert from_toml == from_json
    assert from_toml.seed.items == ("a", "b")  # repeats dropped, first kept
    assert from_toml.filters.birth_months == (12,)
    assert from_toml.filters.joined_after == date(2023, 1, 1)
    assert from_toml.size.top_n == 5
    assert isinstance(from_toml.size.top_n, int)


def test_the_document_model_round_trips_the_written_document() -> None:
    document = {
        "name": "x",
        "seed": {"members": ["m1"]},
        "filters": {"p_alive": {"min": 0.2}, "clv": {"top_percent": 10}},
        "size": {"top_percent": 5, "rank_by": "uplift"},
        "holdout": {"percent": 10, "salt": "s"},
    }
    definition = parse_definition(document)
    assert definition.size.rank_by == "uplift"
    assert definition.holdout is not None
    assert definition.holdout.salt == "s"
    written = definition.to_dict()
    assert parse_definition(written) == definition
    assert read_document(written).model_dump(exclude_none=True) == written


def test_the_api_body_model_is_the_engines() -> None:
    from serving import audience_schemas

    assert audience_schemas.AudienceDefinition is AudienceDefinition
    schema = AudienceDefinition.model_json_schema()
    assert schema["additionalProperties"] is False
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
