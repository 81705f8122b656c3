"""training.evaluate on hand-computed cases: who is evaluated, what is relevant, the metrics."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import scipy.sparse as sp

from engine.ids import IdMap
from engine.interactions import PurchaseLines
from engine.models import TrainData, create_model
from training.config import EvaluationConfig
from training.data import MemberFacts, PreparedData, Split
from training.evaluate import build_eval_set, evaluate_ranker, model_ranker, new_report, top_k

TIERS = ("regular", "gold")


def prepared() -> PreparedData:
    # m0 bought items 0 and 1 before the cutoff, m1 item 2, m2 nothing.
    # In the test window: m0 bought 1 (again) and 3 (new), m1 bought 2 (again), m2 bought 4.
    history = sp.csr_matrix(
        np.array([[1, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    )
    empty = np.zeros(0, dtype=np.int64)
    return PreparedData(
        split=Split(datetime(2025, 6, 1), datetime(2025, 7, 1)),
        tiers=TIERS,
        member_ids=IdMap(["m0", "m1", "m2"]),
        item_ids=IdMap([f"i{n}" for n in range(5)]),
        lines=PurchaseLines(member=empty, item=empty, quantity=empty),
        tag_matched_lines=0,
        members=MemberFacts(
            tier=np.array([1, 0, -1]),
            lifecycle=np.array(["active", "new", "churned"]),
            n_orders=np.array([5, 1, 0]),
        ),
        history=history,
        trending=np.zeros(5, dtype=np.float32),
        test_member=np.array([0, 0, 1, 2]),
        test_item=np.array([1, 3, 2, 4]),
    )


def test_eval_set_members_and_relevance() -> None:
    eval_set = build_eval_set(prepared(), EvaluationConfig(ks=(1, 2), few_purchases=1))
    assert eval_set.rows.tolist() == [0, 1]  # m2 has no history before the cutoff
    assert eval_set.test_members == 2
    assert eval_set.relevance.toarray().tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0]]
    assert eval_set.relevance_new.toarray().tolist() == [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert eval_set.has_new.tolist() == [True, False]
    assert eval_set.groups["tier"].tolist() == ["gold", "regular"]
    assert eval_set.groups["purchases"].tolist() == ["more_purchases", "few_purchases"]


def test_sampling_keeps_at_most_max_members() -> None:
    eval_set = build_eval_set(prepared(), EvaluationConfig(max_members=1, ks=(1, 2)))
    assert eval_set.rows.size == 1
    assert eval_set.test_members == 2


def test_metrics_by_hand() -> None:
    eval_set = build_eval_set(prepared(), EvaluationConfig(ks=(1, 2)))
    calls: list[tuple[list[int], bool]] = []

    def ranker(rows: np.ndarray, k: int, exclude: bool) -> np.ndarray:
        calls.append((rows.tolist(), exclude))
        ranked = {(0, False): [3, 0], (1, False): [0, 2], (0, True): [3, 4]}
        return np.array([ranked[(int(r), exclude)][:k] for r in rows])

    result = evaluate_ranker("fake", ranker, eval_set, (1, 2), headline_k=2)
    assert calls == [([0, 1], False), ([0], True)]
    at1, at2 = result.summaries[("all", 1)], result.summaries[("all", 2)]
    # @1: m0 hits (item 3), m1 misses
    assert (at1.precision, at1.recall, at1.ndcg, at1.hit_rate) == (0.5, 0.25, 0.5, 0.5)
    # @2: m0 one hit of two relevant at rank 1: NDCG 1 / (1 + 1/log2 3); m1 hit at rank 2
    discount = 1 / np.log2(3)
    assert at2.ndcg == pytest.approx((1 / (1 + discount) + discount) / 2)
    assert at2.recall == pytest.approx((0.5 + 1.0) / 2)
    assert at2.precision == 0.5
    assert at2.hit_rate == 1.0
    assert at2.coverage == pytest.approx(3 / 5)
    new = result.summaries[("new", 2)]
    assert (new.n_members, new.ndcg, new.recall, new.precision) == (1, 1.0, 1.0, 0.5)
    gold = result.breakdowns[("all", "tier", "gold")]
    assert gold.n_members == 1
    assert gold.ndcg == pytest.approx(1 / (1 + discount))
    report = new_report(eval_set, (1, 2), 2)
    report.results.append(result)
    metrics = report.metrics(main="fake")
    assert metrics["ndcg@2/all"] == pytest.approx(at2.ndcg)
    assert metrics["ndcg@2/all/tier=regular"] == pytest.approx(discount)
    assert metrics["eval/members_new"] == 1.0
    assert "| fake |" in report.markdown()


def test_model_ranker_excludes_purchases_and_breaks_ties_by_popularity() -> None:
    data = prepared()
    model = create_model("buy_again")
    model.fit(TrainData(confidence=data.history))
    popularity = np.array([0.0, 1.0, 5.0, 3.0, 2.0])
    rank = model_ranker(model.export(), data.history, data.history, tie_break=popularity)
    # m0: its history (item 1 weight 2, item 0 weight 1), then the rest by popularity
    assert rank(np.array([0]), 4, False).tolist() == [[1, 0, 2, 3]]
    assert rank(np.array([0]), 4, True).tolist() == [[2, 3, 4, -1]]


def test_top_k_orders_ties_by_index_and_pads() -> None:
    scores = np.array([[0.5, 0.9, 0.5, -np.inf]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[1, 0, 2]]
    assert top_k(scores, 5).tolist() == [[1, 0, 2, -1, -1]]
