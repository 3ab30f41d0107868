"""NSGA-II breeds clones of its parents; a clone is told its twin's outcome instead of running again."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution

from prunetune.search import ParetoOptunaSearch, make_sampler

SPACE = {"trial.block_size": CategoricalDistribution([16, 32, 64]),
         "trial.inference_precision": CategoricalDistribution(["fp32", "int8", "bf16"])}


def test_clones_are_redrawn(tmp_path):
    searcher = ParetoOptunaSearch(SPACE, objectives={"accuracy": "max", "latency_ms": "min"},
                                  storage_url=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                                  run_dir=str(tmp_path),
                                  sampler=make_sampler("nsga2", seed=0, num_trials=8, population_size=4))
    ran = []
    for index in range(8):
        params = searcher.suggest(f"t{index}")
        ran.append(tuple(sorted(params.items())))
        block = params["trial.block_size"]
        searcher.on_trial_complete(f"t{index}", result={"accuracy": 1 - block / 100, "latency_ms": 100 / block})
    assert len(set(ran)) == len(ran), ran
    clones = [t for t in searcher.study.trials if "duplicate_of" in t.user_attrs]
    for clone in clones:
        twin = searcher.study.trials[clone.user_attrs["duplicate_of"]]
        assert clone.params == twin.params and clone.values == twin.values
        assert "tune_trial_id" not in clone.user_attrs


def test_a_clone_of_a_trial_still_running_is_redrawn(tmp_path):
    searcher = ParetoOptunaSearch(SPACE, objectives={"accuracy": "max", "latency_ms": "min"},
                                  storage_url=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                                  run_dir=str(tmp_path), sampler=make_sampler("random", seed=2, num_trials=8))
    # Seed 2 draws a running trial's twin among the first eight draws (seed 0 happens not to).
    running = [tuple(sorted(searcher.suggest(f"t{index}").items())) for index in range(8)]
    assert len(set(running)) == len(running), running  # nine combinations, none drawn twice while running
    clones = [t for t in searcher.study.trials if "duplicate_of" in t.user_attrs]
    assert clones and all(t.state.name == "FAIL" for t in clones)
    for clone in clones:
        assert clone.params == searcher.study.trials[clone.user_attrs["duplicate_of"]].params
