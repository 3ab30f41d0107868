"""The Python API: configuration, one trial, and the trainable inside a ray.tune.Tuner of one's own."""

import subprocess
import sys

import prunetune
from prunetune import metrics as M


def test_importing_prunetune_stays_light():
    code = ("import sys, prunetune; prunetune.load_config; heavy = [m for m in ('torch', 'ray', 'transformers') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_config_takes_presets_files_and_configs():
    config = prunetune.load_config("bbc-news", ["trial.sparsity=0.3"])
    assert config.trial.sparsity == 0.3
    again = prunetune.load_config(config, ["trial.method=magnitude"])
    assert again.trial.method == "magnitude" and again.trial.sparsity == 0.3


def test_run_trial_from_python(tiny_config, tmp_path):
    metrics = prunetune.run_trial(tiny_config(), output_dir=tmp_path, overrides=["trial.sparsity=0.25"])
    assert M.missing_final_keys(metrics) == []
    assert (tmp_path / "model" / "config.json").is_file()


def test_tune_param_space_mirrors_the_configs_space():
    from ray.tune.search.sample import Categorical, Float, Integer

    config = prunetune.load_config("bbc-news", ["space.trial.max_steps={int: [200, 400], step: 100}",
                                                "search.scheduler=fifo"])
    space = prunetune.tune_param_space(config)
    assert set(space) == {key for key, dim in config.space.items() if dim.is_searched}
    assert isinstance(space["trial.sparsity"], Float) and isinstance(space["trial.block_size"], Categorical)
    assert isinstance(space["trial.max_steps"], Integer)
    assert space["trial.sparsity"].lower == 0.0 and space["trial.sparsity"].upper == 0.95


def test_the_trainable_in_a_users_own_tuner(tiny_config, tmp_path):
    import ray
    from ray import tune

    config = tiny_config()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            prunetune.tune_trainable(config, run_dir=tmp_path / "run"),
            param_space={"trial.sparsity": tune.grid_search([0.25, 0.5])},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="mine", verbose=0),
        )
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    assert not results.errors
    finals = sorted(result.metrics[M.SPARSITY] for result in results)
    assert len(finals) == 2 and finals[0] < finals[1]
    assert all(M.missing_final_keys(result.metrics) == [] for result in results)


def test_tune_scheduler_is_the_configs_scheduler(tmp_path):
    from ray.tune.schedulers import FIFOScheduler

    from prunetune.search import RungScheduler

    moasha = prunetune.tune_scheduler(
        prunetune.load_config("quickstart", ["search.scheduler=moasha", "search.grace_steps=10"]), run_dir=tmp_path)
    assert isinstance(moasha, RungScheduler)
    assert moasha.objectives.keys == ("accuracy", "latency_ms", "emissions_kg")
    assert moasha.ladder.rungs == [10, 30] and moasha.ladder.reduction_factor == 3
    fifo = prunetune.tune_scheduler(prunetune.load_config("quickstart", ["search.scheduler=fifo"]))
    assert type(fifo) is FIFOScheduler
