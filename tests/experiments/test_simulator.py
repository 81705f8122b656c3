"""The simulated storefront (engine.experiments.simulator, engine.experiments.storefront):
the purchase model on a hand-made truth, the planted better variant, the seeded offline
coverage and detection (no HTTP), and the HTTP driver against a fake service."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.experiments.assignment import variant_of
from engine.experiments.simulator import (
    Lists,
    PurchaseModel,
    Simulator,
    Truth,
    seeded_detection,
    simulate_offline,
    truth_lists,
)
from engine.experiments.storefront import run_storefront
from feature_store.synthetic import SynthConfig, generate, write_synthetic

LN2 = math.log(2.0)


def hand_truth() -> Truth:
    """One dimension, so a(m, i) = preference_m * vector_i: member A likes what B dislikes."""
    return Truth(
        member_ids=["A", "B"],
        preference=[[1.0], [-1.0]],
        item_ids=["i0", "i1", "i2", "i3", "i4"],
        item_vectors=[[0.0], [LN2], [-LN2], [5.0], [0.0]],
        popularity=[0.1, 0.2, 0.3, 0.1, 0.3],
        price=[1.0, 2.0, 3.0, 4.0, 10.0],
    )


MODEL = PurchaseModel(base=0.1, slope=1.0, cap=0.5, background=0.2, challenger_lift=2.0)


def test_probabilities_follow_the_documented_form() -> None:
    truth = hand_truth()
    sim = Simulator(truth, MODEL)
    lists = truth.lists(["A", "B"], [["i0", "i1", "i2", "i3"], ["i1", "unknown"]])
    assert lists.items.tolist() == [[0, 1, 2, 3], [1, -1, -1, -1]]
    # A: 0.1 * e^a for a = 0, ln 2, -ln 2, 5 (capped at 0.5); B: a = -ln 2, then empty slots
    champion = sim.probabilities(lists)
    np.testing.assert_allclose(champion, [[0.1, 0.2, 0.05, 0.5], [0.05, 0, 0, 0]])
    challenger = sim.probabilities(lists, [True, False])  # lift 2 on A's row only
    np.testing.assert_allclose(challenger, [[0.2, 0.4, 0.1, 0.5], [0.05, 0, 0, 0]])

    q = sim.expected_conversion(lists)
    np.testing.assert_allclose(q, [1 - 0.9 * 0.8 * 0.95 * 0.5, 0.05])
    np.testing.assert_allclose(sim.expected_any_conversion(lists), 1 - (1 - q) * 0.8)
    # revenue: shown p * price + background * popularity-weighted mean price of the rest
    rest_a = 0.3 * 10.0 / 0.3  # only i4 is not shown to A
    rest_b = (0.1 * 1 + 0.3 * 3 + 0.1 * 4 + 0.3 * 10) / 0.8
    np.testing.assert_allclose(
        sim.expected_revenue(lists),
        [0.1 * 1 + 0.2 * 2 + 0.05 * 3 + 0.5 * 4 + 0.2 * rest_a, 0.05 * 2 + 0.2 * rest_b],
    )
    with pytest.raises(ValueError, match="not in the ground truth"):
        truth.lists(["nobody"], [["i0"]])


def test_draws_match_the_probabilities() -> None:
    truth = hand_truth()
    sim = Simulator(truth, MODEL)
    n = 100_000
    lists = Lists(np.zeros(n, dtype=np.int64), np.tile([0, 1, 2, 3], (n, 1)))
    rng = np.random.default_rng(7)
    drawn = sim.draw(lists, rng, challenger=True)
    shown = drawn.item[drawn.recommended]
    rates = np.bincount(shown, minlength=5)[:4] / n
    np.testing.assert_allclose(rates, [0.2, 0.4, 0.1, 0.5], atol=0.006)
    # the background purchase: never a shown item, so always i4 here, at its price
    assert set(drawn.item[~drawn.recommended].tolist()) == {4}
    assert abs((~drawn.recommended).sum() / n - 0.2) < 0.006
    np.testing.assert_array_equal(drawn.price, truth.price[drawn.item])
    assert np.all(np.diff(drawn.row) >= 0)
    out = sim.outcomes(lists, drawn)
    expected = sim.expected_conversion(lists, True)[0]
    assert abs(out.converted.mean() - expected) < 0.006
    assert abs(out.revenue.mean() - sim.expected_revenue(lists, True)[0]) < 0.05
    again = sim.draw(lists, np.random.default_rng(7), challenger=True)
    np.testing.assert_array_equal(again.item, drawn.item)  # seeded: the same purchases


@pytest.fixture(scope="module")
def world() -> tuple[Simulator, Lists, Lists]:
    """10,000 members x 1,000 items; lists by the planted taste and by popularity."""
    result = generate(SynthConfig(members=10_000, items=1_000, purchases=100_000, seed=3))
    truth = Truth.from_result(result)
    everyone = np.arange(truth.member_ids.size)
    return Simulator(truth), truth_lists(truth, everyone, 10, 1.0), truth_lists(truth, everyone)


def test_truth_loads_from_a_written_dataset(tmp_path: Path) -> None:
    cfg = SynthConfig(members=300, items=100, purchases=2_000, seed=4)
    write_synthetic(cfg, tmp_path / "parquet")
    write_synthetic(cfg, tmp_path / "csv", fmt="csv")
    memory = Truth.from_result(generate(cfg))
    for folder in ("parquet", "csv"):
        loaded = Truth.load(tmp_path / folder)
        np.testing.assert_array_equal(loaded.member_ids, memory.member_ids)
        np.testing.assert_array_equal(loaded.preference, memory.preference)
        np.testing.assert_allclose(loaded.price, memory.price)
        np.testing.assert_allclose(loaded.popularity, memory.popularity)
    assert memory.member_rows(["M000002", "nope"]).tolist() == [1, -1]


def test_the_planted_better_variant_has_the_higher_expected_conversion(
    world: tuple[Simulator, Lists, Lists],
) -> None:
    sim, taste, _ = world
    # scheme "lift": the same lists, the challenger's probabilities x 1.2
    q_champion = sim.expected_conversion(taste, False)
    q_challenger = sim.expected_conversion(taste, True)
    assert np.all(q_challenger >= q_champion)
    planted = sim.planted_difference(taste, taste)
    assert planted == pytest.approx(q_challenger.mean() - q_champion.mean())
    assert 0.03 < planted < 0.06
    # scheme "lists": popularity lists against lists ranked by the planted taste, no lift
    plain = Simulator(sim.truth, PurchaseModel(challenger_lift=1.0))
    popular = truth_lists(sim.truth, taste.members, 10, taste=0.0)
    assert plain.planted_difference(popular, taste) > 0.03
    assert plain.planted_difference(taste, taste) == 0.0


def test_offline_run_assigns_by_the_experiment_hash(world: tuple[Simulator, Lists, Lists]) -> None:
    sim, taste, _ = world
    run = simulate_offline(sim, taste, taste, 2_000, np.random.default_rng(1), "exp-a")
    assert run.champion.exposed + run.challenger.exposed == 2_000
    assert 900 < run.challenger.exposed < 1_100
    for arm in (run.champion, run.challenger):
        assert arm.converted <= arm.converted_any <= arm.exposed
        assert arm.revenue > 0


def test_seeded_runs_cover_the_planted_difference(world: tuple[Simulator, Lists, Lists]) -> None:
    """The issue's target: the report's 95% interval covers the planted difference in at
    least 93% of seeded runs. 2,000 runs (standard error of the share about 0.5 points) of 500
    members each; measured 0.946."""
    sim, taste, _ = world
    found = seeded_detection(sim, taste, taste, runs=2_000, members_per_run=500, seed=0)
    assert found.coverage >= 0.93
    assert found.mean_estimate == pytest.approx(found.planted, abs=0.004)


def test_the_planted_better_variant_is_detected_as_a_significant_win(
    world: tuple[Simulator, Lists, Lists],
) -> None:
    """200 seeded runs of 4,000 members (about 2,000 per variant), planted difference 0.043:
    measured power 0.86 (detected), coverage 0.96, no run that calls the champion better."""
    sim, taste, _ = world
    found = seeded_detection(sim, taste, taste, runs=200, members_per_run=4_000, seed=0)
    assert found.detected >= 0.75
    assert found.reversed == 0.0
    assert found.coverage >= 0.9


def test_an_aa_test_finds_no_difference(world: tuple[Simulator, Lists, Lists]) -> None:
    """No lift, the same lists: about 5% false calls either way (measured 0.0525 in 400 runs)."""
    sim, taste, _ = world
    plain = Simulator(sim.truth, PurchaseModel(challenger_lift=1.0))
    found = seeded_detection(plain, taste, taste, runs=400, members_per_run=1_000, seed=0)
    assert found.planted == 0.0
    assert found.detected + found.reversed <= 0.09
    assert found.coverage >= 0.91


class FakeService:
    """Answers like the service: lists from the taste lists, events recorded."""

    def __init__(self, sim: Simulator, lists: Lists, *, variants: bool) -> None:
        self.sim, self.lists, self.variants = sim, lists, variants
        self.events: list[dict[str, Any]] = []
        self.batches: list[int] = []
        self.served: dict[str, float] = {}
        self.clock = 1_760_000_000.0

    def now(self) -> float:
        self.clock += 0.25
        return self.clock

    def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        assert headers["Authorization"] == "Bearer key"
        if method == "POST":
            assert path == "/v1/events"
            events = json.loads(body or b"{}")["events"]
            self.batches.append(len(events))
            self.events.extend(events)
            answer = {"applied": len(events), "duplicates": 0, "before_snapshot": 0}
            return 200, json.dumps(answer).encode()
        member = path.split("/")[3]
        row = int(self.sim.truth.member_rows([member])[0])
        items = [{"item_id": str(self.sim.truth.item_ids[i])} for i in self.lists.items[row]]
        payload: dict[str, Any] = {"member_id": member, "model_version": "m/1", "items": items}
        if self.variants:
            payload |= {
                "variant": variant_of("exp", member, 50),
                "recommendation_id": f"r-{member}",
            }
        self.served[member] = self.now()
        return 200, json.dumps(payload).encode()


@pytest.mark.parametrize("variants", [True, False], ids=["variant-in-response", "no-variant"])
def test_storefront_drives_the_service(
    world: tuple[Simulator, Lists, Lists], variants: bool
) -> None:
    sim, taste, _ = world
    fake = FakeService(sim, taste, variants=variants)
    members = sim.truth.member_ids[np.random.default_rng(2).choice(10_000, 1_200, replace=False)]
    run = run_storefront(
        "http://fake", "key", members.tolist(), np.random.default_rng(3), simulator=sim,
        experiment="exp", percent=50, transport=fake, clock=fake.now,
    )  # fmt: skip
    shown = run.exposures
    assert shown.height == 1_200
    expected = [variant_of("exp", m, 50) for m in members]
    assert shown["variant"].to_list() == expected
    assert set(shown["variant_source"]) == {"response" if variants else "assigned"}
    assert run.applied == len(fake.events) == run.purchases.height > 0
    assert max(fake.batches) <= 500
    assert len({e["event_id"] for e in fake.events}) == len(fake.events)
    for event in fake.events:
        bought_at = datetime.fromisoformat(event["ts"]).timestamp()
        delay = bought_at - fake.served[event["member_id"]]
        assert 1.0 < delay < 60.5  # after the list was served, within the delay range
        assert event["quantity"] == 1
        assert event["amount"] > 0
    summary = run.summary()
    assert set(summary) == {"champion", "challenger"}
    for numbers in summary.values():
        assert 0 < numbers["conversion"] <= numbers["any_conversion"] <= 1
    assert 0.03 < run.lift_difference < 0.06  # same lists: the planted lift's difference
    if variants:
        assert shown["recommendation_id"].null_count() == 0
