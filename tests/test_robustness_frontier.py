"""Frontier, effective robustness, seed stats, accuracy-on-the-line and the outcome sentence vs hand computations."""
import math
import statistics
import subprocess
import sys

import pytest

from tracer_core.metrics.outcome import outcome_sentence
from tracer_core.metrics.robustness_frontier import (accuracy_on_line, effective_robustness, frontier_ood,
                                                     pearson, seed_stats, transform)

# alpha 0 = zero-shot (0.50, 0.40), 0.5 = (0.70, 0.50), 1 = FT (0.80, 0.45): ID monotone in alpha
CURVE = [{"alpha": 1.0, "id_accuracy": 0.80, "ood_accuracy": 0.45},
         {"alpha": 0.0, "id_accuracy": 0.50, "ood_accuracy": 0.40},
         {"alpha": 0.5, "id_accuracy": 0.70, "ood_accuracy": 0.50}]


def test_interpolation_and_effective_robustness_by_hand():
    # F(0.60) = 0.40 + (0.50 - 0.40) * (0.60 - 0.50) / (0.70 - 0.50) = 0.45
    assert frontier_ood(CURVE, 0.60).ood == pytest.approx(0.45)
    # F(0.75) = 0.50 + (0.45 - 0.50) * 0.05 / 0.10 = 0.475; a run at (0.75, 0.46) lies 1.5 points below
    er = effective_robustness(CURVE, 0.75, 0.46)
    assert er["frontier_ood"] == pytest.approx(0.475) and er["position"] == "inside"
    assert er["effective_robustness"] == pytest.approx(-0.015)
    assert effective_robustness(CURVE, 0.60, 0.48)["effective_robustness"] == pytest.approx(0.03)
    assert frontier_ood(CURVE, 0.80).ood == pytest.approx(0.45)          # an endpoint is inside


def test_outside_range_is_nan_with_a_flag_or_extrapolated():
    above = effective_robustness(CURVE, 0.85, 0.5)
    assert math.isnan(above["effective_robustness"]) and above["position"] == "above"
    assert frontier_ood(CURVE, 0.4).position == "below"
    # extrapolation: the line through the two extreme vertices on that side. CURVE's end segment falls
    # (0.70, 0.50) -> (0.80, 0.45): its line at 0.85 is 0.425, below the 0.50 the path reached, so 0.50 holds
    assert frontier_ood(CURVE, 0.85, extrapolate=True).ood == pytest.approx(0.50)
    rising = [{"alpha": 0.0, "id_accuracy": 0.50, "ood_accuracy": 0.40},
              {"alpha": 1.0, "id_accuracy": 0.80, "ood_accuracy": 0.46}]           # slope 0.2
    assert frontier_ood(rising, 0.90, extrapolate=True).ood == pytest.approx(0.46 + 0.2 * 0.10)   # 0.48
    low = frontier_ood(CURVE, 0.40, extrapolate=True)
    assert low.ood == pytest.approx(0.35) and low.position == "extrapolated-below"
    # a falling low end (ID 0.5 -> 0.6 while OOD 0.45 -> 0.40) is held flat at the lowest-ID point's OOD
    folded = [{"alpha": 0.0, "id_accuracy": 0.50, "ood_accuracy": 0.45},
              {"alpha": 1.0, "id_accuracy": 0.60, "ood_accuracy": 0.40}]
    assert frontier_ood(folded, 0.40, extrapolate=True).ood == pytest.approx(0.45)


def test_non_monotone_id_uses_the_upper_envelope():
    # ID folds back: alpha 0.5 at ID 0.8, alpha 1 at ID 0.7 with higher OOD
    curve = [{"alpha": 0.0, "id": 0.5, "ood": 0.4}, {"alpha": 0.5, "id": 0.8, "ood": 0.5},
             {"alpha": 1.0, "id": 0.7, "ood": 0.6}]
    # at 0.75: segment 1 gives 0.4 + 0.1 * 0.25 / 0.3 = 0.48333, segment 2 gives 0.55 -> max 0.55
    assert frontier_ood(curve, 0.75).ood == pytest.approx(0.55)
    assert frontier_ood(curve, 0.60).ood == pytest.approx(0.4 + 0.1 / 3)    # only segment 1 covers 0.6
    with pytest.raises(ValueError, match="2 distinct alphas"):
        frontier_ood(curve[:1], 0.5)


def test_seed_stats_by_hand():
    s = seed_stats([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert s["n"] == 4 and s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(5 / 3)) and s["sem"] == pytest.approx(math.sqrt(5 / 3) / 2)
    one = seed_stats([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["std"]) and seed_stats([])["n"] == 0


def test_pearson_and_accuracy_on_the_line():
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 38 / 3))   # 0.99339
    ids = [0.55, 0.65, 0.75, 0.85, 0.95]
    nd = statistics.NormalDist()
    on_line = [nd.cdf(0.5 * nd.inv_cdf(p) - 0.3) for p in ids]        # exactly linear in probit space
    off_line = [0.6, 0.3, 0.62, 0.31, 0.6]
    runs = [{"mnist": a, "c": b, "o": c} for a, b, c in zip(ids, on_line, off_line)]
    rows = {r["dataset"]: r for r in accuracy_on_line(runs, "mnist", ["c", "o"], space="probit")}
    assert rows["c"]["r"] == pytest.approx(1.0) and rows["c"]["slope"] == pytest.approx(0.5)
    assert abs(rows["o"]["r"]) < 0.5 and rows["o"]["n"] == 5
    assert transform(0.5, "logit") == 0.0 and transform(1.0, "probit") == pytest.approx(nd.inv_cdf(1 - 1e-4))
    with pytest.raises(ValueError, match="space"):
        transform(0.5, "log")


def test_outcome_sentence_follows_the_results():
    base = {"ft": {"id": 0.836, "ood": 0.722, "er": 0.0, "kl_auc": None},
            "tracer_ema": {"id": 0.848, "ood": 0.723, "er": 0.004, "kl_auc": 1.0},
            "tracer": {"id": 0.792, "ood": 0.697, "er": -0.013, "kl_auc": 3.2}}
    labels = {"ft": "FT", "tracer_ema": "TRACER-EMA", "tracer": "TRACER-WMA"}
    s1 = outcome_sentence(base, labels=labels)
    assert "persistent teacher-student gap (KL AUC 3.2x TRACER-EMA's)" in s1
    assert "-1.3 points" in s1 and "below FT's +0.0" in s1 and "below TRACER-EMA's +0.4" in s1
    better = {**base, "tracer": {"id": 0.85, "ood": 0.76, "er": 0.021, "kl_auc": 1.1}}
    s2 = outcome_sentence(better, labels=labels)
    assert s2 != s1 and "+2.1 points" in s2 and "above FT's" in s2 and "no larger" in s2
    outside = {**base, "tracer": {"id": 0.9, "ood": 0.7, "er": float("nan")}}
    assert "outside the WiSE-FT frontier" in outcome_sentence(outside, labels=labels)
    # ER undefined: the end-segment estimate is said to be one, and the raw OOD means are compared instead
    said = outcome_sentence({**outside, "tracer": {**outside["tracer"], "er_ext": 0.012}}, labels=labels)
    assert "estimates +1.2 points" in said and "no effective robustness" in said
    assert "OOD mean 70.0 % is below FT's 72.2 % (ID 83.6 %) and below TRACER-EMA's 72.3 % (ID 84.8 %)" in said
    assert "estimates" not in outcome_sentence(outside, labels=labels)
    assert outcome_sentence({"ft": base["ft"]}).startswith("No stored result for tracer")


def test_importable_without_torch():
    code = ("import sys, tracer_core.metrics.robustness_frontier, tracer_core.metrics.outcome, "
            "tracer_core.metrics.selection; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_effective_robustness_table_and_seed_means():
    from tracer_core.metrics.robustness_frontier import effective_robustness_table, seed_means
    pts = [{"label": "a", "id": 0.60, "ood": 0.48}, {"label": "a", "id": 0.60, "ood": 0.46},
           {"label": "b", "id": 0.75, "ood": 0.46}, {"label": "c", "id": 0.90, "ood": 0.50},
           {"label": "d", "id": 0.70, "ood": 0.50}]
    t = effective_robustness_table(pts, CURVE)
    assert [r["sign"] for r in t] == ["+", "+", "-", "n/a", "0"]
    assert t[1]["effective_robustness"] == pytest.approx(0.01)            # 0.46 - F(0.60) = 0.46 - 0.45
    a = seed_means(t)[0]
    assert a["label"] == "a" and a["n"] == 2
    assert a["effective_robustness"]["mean"] == pytest.approx(0.02) and a["ood"]["std"] == pytest.approx(0.02 ** 0.5 * 0.1)


def test_er_tables_extend_the_end_segment_only_outside_the_range():
    """Frontier (0.6, 0.5) -> (0.8, 0.6): slope 0.5. A run at ID 0.9, OOD 0.7 is right of it: ER n/a, the
    extended line gives F(0.9) = 0.65, so 0.05; a run inside at ID 0.7, OOD 0.6: ER = 0.6 - 0.55 = 0.05 and no
    estimate shown."""
    import pandas as pd
    from tracer_core.api.frontier import er_display, er_tables
    curve = pd.DataFrame([{"alpha": 0.0, "id_accuracy": 0.6, "ood_accuracy": 0.5},
                          {"alpha": 1.0, "id_accuracy": 0.8, "ood_accuracy": 0.6}])
    pts = pd.DataFrame([{"run_id": r, "label": r, "strategy": "s", "group": r, "group_label": r, "id": i, "ood": o}
                        for r, i, o in (("right", 0.9, 0.7), ("inside", 0.7, 0.6))])
    per, _ = er_tables(pts, curve)
    shown = er_display(per).set_index("run")
    assert math.isnan(shown.at["right", "ER (points)"]) and shown.at["right", "sign"] == "n/a"
    assert shown.at["right", "ER extended"] == pytest.approx(5.0)
    assert shown.at["inside", "ER (points)"] == pytest.approx(5.0)
    assert math.isnan(shown.at["inside", "ER extended"])
