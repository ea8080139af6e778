"""The ID validation hold-out (mnist:val / mnist:fit), validation-only selection, and the tuning bench --quick."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tracer_core.data import DataError, load_dataset
from tracer_core.data.digits import _mnist_raw, mnist_indices
from tracer_core.metrics.selection import select_trial, trial_score

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seed", [0, 3])
def test_validation_split_is_a_disjoint_stratified_hold_out(seed):
    fit, val, test, train = (set(mnist_indices(s, seed).tolist()) for s in ("fit", "val", "test", "train"))
    assert len(val) == 400 and len(fit) == 3600 and len(test) == 1000
    assert not val & fit and not val & test and not fit & test
    assert val | fit == train                                     # carved from the train side only
    labels = _mnist_raw()[1]
    assert torch.bincount(labels[mnist_indices("val", seed)], minlength=10).tolist() == [40] * 10


def test_validation_sets_by_name():
    val = load_dataset("mnist:val", split="test")
    assert val.name == "mnist:val" and len(val) == 400
    fit_train = load_dataset("mnist:fit", split="train")
    assert len(fit_train) == 3600
    # the test side of mnist:fit is the usual test set: ID numbers stay comparable with untuned runs
    assert torch.equal(load_dataset("mnist:fit", split="test").tensors()[0], load_dataset("mnist").tensors()[0])
    with pytest.raises(DataError, match="validation hold-out"):
        load_dataset("mnist:val", split="train")
    with pytest.raises(DataError, match=":val' or ':fit'"):
        load_dataset("mnist:valid")


def _run(val, test, ood):
    return {"final_eval": {"mnist:val": {"accuracy": val}, "mnist": {"accuracy": test},
                           "colored_mnist": {"accuracy": ood}}}


def test_selection_reads_only_the_validation_set():
    trials = [{"config": {"loss.lambda_sd": 0.3}, "seeds": [_run(0.80, 0.70, 0.60), _run(0.82, 0.71, 0.61)]},
              {"config": {"loss.lambda_sd": 0.9}, "seeds": [_run(0.85, 0.60, 0.50), _run(0.83, 0.62, 0.52)]},
              {"config": {"loss.lambda_sd": 1.5}, "seeds": [_run(0.70, 0.90, 0.95), _run(0.72, 0.91, 0.96)]}]
    assert trial_score(trials[1]["seeds"], "mnist:val") == pytest.approx(0.84)
    chosen = select_trial(trials, "mnist:val")
    assert chosen == 1
    # poison test and OOD: make the other trials look perfect there -> the choice must not move
    poisoned = copy.deepcopy(trials)
    for i, t in enumerate(poisoned):
        for r in t["seeds"]:
            for name in ("mnist", "colored_mnist"):
                r["final_eval"][name]["accuracy"] = 0.0 if i == chosen else 1.0
    assert select_trial(poisoned, "mnist:val") == chosen
    # and a selection keyed on test would have chosen differently: the poison is strong enough to detect it
    assert select_trial(poisoned, "mnist") != chosen
    with pytest.raises(KeyError, match="mnist:val"):
        select_trial([{"config": {}, "seeds": [{"final_eval": {"mnist": {"accuracy": 1.0}}}]}], "mnist:val")


def test_tune_protocol_quick(tmp_path):
    """Smoke test: the grid file is valid for every method and one tiny trial per method runs end to end."""
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "bench" / "tune_protocol.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "tuning_results.json").read_text())
    assert set(data["chosen"]) == set(data["meta"]["methods"])
    for method, row in data["chosen"].items():
        assert 0.0 <= row["id"]["mean"] <= 1.0 and "effective_robustness" in row
    assert "| method |" in (out / "tuning_results.md").read_text()


def test_grid_must_give_every_method_the_same_number_of_trials(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import tune_protocol
    grid = json.loads((ROOT / "tracer_core" / "configs" / "grids" / "tuning_grid.json").read_text())
    assert len(tune_protocol.trials_of(grid["methods"]["tracer"])) == grid["protocol"]["trials_per_method"]
    grid["methods"]["ft"]["grid"]["optim.lr"].append(1e-6)          # 5 trials for FT, 4 for the others
    bad = tmp_path / "grid.json"
    bad.write_text(json.dumps(grid))
    with pytest.raises(SystemExit, match="methods.ft.grid has 5 trials"):
        tune_protocol.load_grid(bad, None)
