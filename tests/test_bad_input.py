"""Bad input, tried as a new user would: each ends in a clear error naming the key, the value
and what was expected, before any model loads (no training, no Ray cluster here)."""

from __future__ import annotations

import time
import types

import pytest
import yaml

from prunetune import config as C
from prunetune.errors import ConfigError, DataError

SECRET = "s3cret-Pw"


def _problems(call) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    return str(info.value)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("url, shown", [
    (f"postgresql+psycopg2://alice@host/db?password={SECRET}", "postgresql+psycopg2://alice@host/db?password=***"),
    (f"postgresql://alice:{SECRET}@host:5432/db?sslmode=require&sslpassword={SECRET}x",
     "postgresql://alice:***@host:5432/db?sslmode=require&sslpassword=***"),
    (f"postgresql://alice:p@{SECRET}@host/db", "postgresql://alice:***@host/db"),  # '@' inside the password
    ("sqlite:////tmp/a@b/study.db", "sqlite:////tmp/a@b/study.db"),  # a path, no secret
])
def test_a_storage_url_is_redacted_whole_query_parameters_included(url, shown):
    assert C.redact_url(url) == shown
    assert SECRET not in C.redact_url(url)


def test_config_yaml_and_every_string_form_of_a_config_hide_the_password(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db?password={SECRET}"
    config = C.validate({"search": {"storage": url}})
    assert config.search.storage == url  # the real URL stays usable in memory
    C.dump_yaml(config, tmp_path / "config.yaml")
    written = (tmp_path / "config.yaml").read_text()
    assert SECRET not in written and "password=***" in written
    for text in (repr(config), str(config), repr(config.search), str(config.without_secrets().to_dict())):
        assert SECRET not in text


def test_an_invalid_storage_value_is_printed_redacted():
    text = _problems(lambda: C.validate({"search": {"storage": f"postgresql://alice:p@{SECRET}@host/db"}}))
    assert SECRET not in text and "p@" not in text
    assert "search.storage = 'postgresql://alice:***@host/db': the user or password holds '@'" in text
    assert "%40" in text


@pytest.mark.parametrize("url, expected", [
    ("not a url", "search.storage = 'not a url': not a database URL; expected a SQLAlchemy URL such as "),
    ("foo://host/db", "search.storage = 'foo://host/db': SQLAlchemy has no database dialect 'foo'"),
])
def test_a_malformed_storage_url_is_refused_when_the_config_loads(url, expected):
    assert expected in _problems(lambda: C.load("quickstart", [f"search.storage={url}"], check_model=False))


def test_a_missing_driver_names_the_package_to_install(monkeypatch):
    from prunetune.search._optuna import make_storage

    monkeypatch.delenv(C.STORAGE_ENV, raising=False)
    url = f"postgresql://alice:{SECRET}@db.example:5432/studies"
    C.validate({"search": {"storage": url}})  # the form is fine: a node without the driver may read it
    text = _problems(lambda: make_storage(url))
    assert SECRET not in text
    assert ("search.storage = 'postgresql://alice:***@db.example:5432/studies': psycopg, SQLAlchemy's default "
            "driver for postgresql://, is not installed: pip install 'psycopg[binary]'") in text


def test_the_storage_from_the_environment_is_named_as_such(monkeypatch):
    from prunetune.search._optuna import make_storage

    monkeypatch.setenv(C.STORAGE_ENV, "mysql+pymysql://bob:pw@host/db")
    text = _problems(lambda: make_storage(C.storage_url(None, "sqlite:///unused.db")))
    assert f"{C.STORAGE_ENV} = 'mysql+pymysql://bob:***@host/db': the driver pymysql is not installed: pip install " \
           "pymysql" in text


def test_a_sqlite_study_in_a_missing_folder_is_refused_before_the_search(monkeypatch):
    from prunetune.search._optuna import check_study_is_free

    monkeypatch.delenv(C.STORAGE_ENV, raising=False)
    text = _problems(lambda: check_study_is_free("sqlite:////nonexistent/dir/x.db", "prunetune", "runs/x"))
    assert "search.storage = 'sqlite:////nonexistent/dir/x.db': folder '/nonexistent/dir' does not exist" in text


def test_an_unreachable_database_is_a_config_error_without_the_password(monkeypatch):
    from sqlalchemy.exc import OperationalError

    monkeypatch.delenv(C.STORAGE_ENV, raising=False)
    url = f"sqlite:///study.db?password={SECRET}"
    driver_error = OperationalError("connect", {}, Exception(f"password {SECRET} rejected by host"))
    error = C.storage_failure(url, driver_error)
    assert isinstance(error, ConfigError) and SECRET not in str(error)
    assert "search.storage = 'sqlite:///study.db?password=***': cannot open the study's database" in str(error)


def test_opening_a_study_at_a_bad_url_is_a_config_error(tmp_path):
    from prunetune.search._optuna import make_storage

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="search.storage = 'sqlite:///.*a-file/study.db': folder .* does not exist"):
        make_storage(f"sqlite:///{blocker}/study.db")
    with pytest.raises(ConfigError, match="search.storage = 'not a url': not a database URL"):
        make_storage("not a url")


# --------------------------------------------------------------------------- ranges


def test_a_searched_target_speedup_is_checked_against_the_latency_tables_bound():
    tables = [{"runtime": "torch", "precision": "fp32", "max_speedup": 7.46},
              {"runtime": "onnxruntime", "precision": "int8", "max_speedup": 11.0}]
    searched = C.load("quickstart", ["space.trial.target_speedup={uniform: [1.2, 100]}"], check_model=False)
    assert C.speedup_bound_problems(searched, tables) == [
        "space.trial.target_speedup = {'uniform': [1.2, 100]}: speed-ups above 7.46x are unreachable: the latency "
        "table of torch at fp32 allows at most 7.46x (every layer but one removed, one head and the narrowest FFN "
        "kept in it); lower its upper end to at most 7.46"]
    fixed = C.load("nn-pruning", ["trial.target_speedup=50"], check_model=False)
    assert "trial.target_speedup = 50: unreachable" in C.speedup_bound_problems(fixed, tables)[0]
    within = C.load("quickstart", ["space.trial.target_speedup={uniform: [1.2, 7]}"], check_model=False)
    assert C.speedup_bound_problems(within, tables) == []


def test_the_search_stops_at_the_bound_before_any_trial(monkeypatch, tmp_path):
    from prunetune.cluster import RunDir
    from prunetune.search import _driver

    summary = {"accuracy": 0.9, "latency_ms": 1.0, "model_dir": "m", "key": "k",
               _driver.LATENCY_TABLES: [{"runtime": "torch", "precision": "fp32", "max_speedup": 5.0,
                                         "dense_layer_ms": 1.0, "removed_layer_ms": 0.01}]}
    _fake_ray(monkeypatch, lambda: summary)
    config = C.load("quickstart", ["space.trial.target_speedup={uniform: [1.2, 100]}"], check_model=False)
    with pytest.raises(ConfigError, match=r"space.trial.target_speedup = .*above 5.00x are unreachable"):
        _driver._prepare_teacher(config, RunDir(tmp_path), None, types.SimpleNamespace(is_local=False),
                                 source_cache=None, stream=None)


def test_a_searched_sequence_length_beyond_the_models_positions_is_refused():
    text = _problems(lambda: C.load("quickstart", ["space.trial.latency.seq_len={int: [64, 1024]}"]))
    assert "trial.latency.seq_len = 1024: longer than the 512 positions minilm-l6" in text
    assert "(a point of the search space: trial.latency.seq_len=1024)" in text


# --------------------------------------------------------------------------- bounds


def test_latency_threads_beyond_the_trials_cpus_are_refused_in_a_search():
    from prunetune.search import search_problems

    config = C.load("quickstart", ["trial.latency.threads=64"], check_model=False)
    problem = ("trial.latency.threads = 64: more threads than the CPUs a trial is given (cluster.cpus_per_trial = "
               "1); set at most 1, or null for the trial's CPUs, or raise cluster.cpus_per_trial")
    assert C.latency_thread_problems(config) == [problem]
    assert problem in search_problems(config)
    searched = C.load("quickstart", ["space.trial.latency.threads={int: [1, 8]}"], check_model=False)
    assert C.latency_thread_problems(searched)[0].startswith("space.trial.latency.threads = 8: more threads")


def test_latency_threads_beyond_this_machines_cpus_stop_a_trial_before_it_loads(monkeypatch, tmp_path):
    import prunetune
    from prunetune import api

    monkeypatch.setattr(api, "local_cpus", lambda: 2)
    with pytest.raises(ConfigError, match="trial.latency.threads = 64: more threads than the CPUs this machine has "
                                          r"\(2\); set at most 2"):
        prunetune.run_trial("quickstart", output_dir=tmp_path, overrides=["trial.latency.threads=64"])


def test_loss_weights_and_temperatures_are_bounded():
    text = _problems(lambda: C.load("quickstart", ["trial.layer_distill=1e30", "trial.temperature=1e6",
                                                   "trial.latency.min_run_time=1e9"], check_model=False))
    assert "trial.layer_distill = '1e30': Input should be less than or equal to 100" in text
    assert "trial.temperature = '1e6': Input should be less than or equal to 100" in text
    assert "trial.latency.min_run_time = '1e9': Input should be less than or equal to 300" in text


def test_a_non_finite_loss_names_the_keys_most_likely_behind_it():
    import torch

    from prunetune.errors import TrialError
    from prunetune.trainables.training.optimisation import loss_suspects, optimiser_step

    settings = C.validate({"trial": {"precision": "fp16", "learning_rate": 0.5, "layer_distill": 80,
                                     "temperature": 90}}).trial
    model = torch.nn.Linear(2, 1)
    with pytest.raises(TrialError) as info:
        optimiser_step(torch.tensor(float("inf")), model, torch.optim.SGD(model.parameters(), lr=0.1),
                       torch.amp.GradScaler("cpu", enabled=False), describe=lambda: f"step 3; {loss_suspects(settings)}")
    assert ("loss is inf at step 3; the keys most likely behind it: trial.precision = 'fp16', trial.learning_rate "
            "= 0.5, trial.layer_distill = 80.0, trial.temperature = 90.0") in str(info.value)


# --------------------------------------------------------------------------- silent coercion and drops


@pytest.mark.parametrize("override, key", [("trial.latency.threads=yes", "trial.latency.threads"),
                                           ("trial.block_size=true", "trial.block_size"),
                                           ("trial.alpha=on", "trial.alpha")])
def test_a_yaml_boolean_is_not_read_as_a_number(override, key):
    text = _problems(lambda: C.load("quickstart", [override], check_model=False))
    assert f"{key} = True: expected a number, not a boolean (YAML reads yes, no, on, off, true and false" in text


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("trial:\n  sparsity: 0.5\n  block_size: 32\n  sparsity: 0.9\n"
                    "space:\n  trial.sparsity: {uniform: [0.1, 0.9]}\n"
                    "trial:\n  max_steps: 10\n")
    with pytest.raises(ConfigError) as info:
        C.load(path, check_model=False)
    assert info.value.problems == [
        "trial.sparsity: key given twice, at lines 2 and 4 (YAML would keep the second without a word); keep one",
        "trial: section given twice, at lines 1 and 7 (YAML would keep the second without a word); keep one",
    ]
    assert info.value.source == str(path)


def test_an_empty_config_file_is_refused(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert "empty.yaml: empty; expected a mapping of sections (task, teacher, trial, space, search" in \
        _problems(lambda: C.load(path))


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("trial:\n" + "  # padding\n" * 200_000)
    started = time.perf_counter()
    text = _problems(lambda: C.load(path))
    assert time.perf_counter() - started < 1.0
    assert "huge.yaml: 2.4 MB; expected a YAML configuration (a few kilobytes, at most 1 MB)" in text


def test_a_sparsity_beside_a_target_speedup_is_refused_not_dropped():
    text = _problems(lambda: C.validate({"trial": {"sparsity": 0.3, "target_speedup": 3}}))
    assert "trial.sparsity = 0.3 and trial.target_speedup = 3: two pruning targets; set one" in text
    # An override replaces the file's target; the other one goes with it.
    assert C.load("quickstart", ["trial.target_speedup=3"], check_model=False).trial.sparsity is None
    config = C.load("quickstart", ["trial.target_speedup=3"], check_model=False)
    assert config.with_values({"trial.sparsity": 0.4}).trial.target_speedup is None


def test_rung_settings_with_the_fifo_scheduler_are_refused():
    text = _problems(lambda: C.validate({"search": {"scheduler": "fifo", "grace_steps": 100, "reduction_factor": 4}}))
    assert ("search.grace_steps = 100 with search.scheduler = 'fifo': fifo runs every trial to the end and has no "
            "rungs, so grace_steps would be ignored; set search.scheduler to asha, moasha or moasha-interval, or remove "
            "search.grace_steps") in text
    assert "search.reduction_factor = 4 with search.scheduler = 'fifo'" in text
    # Choosing fifo over a preset's moasha replaces its rung settings.
    assert C.load("bbc-news-gpu", ["search.scheduler=fifo"], check_model=False).search.grace_steps is None


def test_an_override_with_an_empty_key_part_names_the_whole_override():
    text = _problems(lambda: C.load("quickstart", ["trial..sparsity=0.5"]))
    assert "--set 'trial..sparsity=0.5': key 'trial..sparsity' has an empty name between dots" in text


def test_overrides_given_as_one_string_are_refused_not_read_by_character():
    import prunetune

    expected = "overrides = 'trial.sparsity=0.7': expected a list of KEY.PATH=VALUE strings, e.g. " \
               "['trial.sparsity=0.7']"
    assert expected in _problems(lambda: prunetune.load_config("quickstart", "trial.sparsity=0.7"))
    assert expected in _problems(lambda: C.load("quickstart", "trial.sparsity=0.7"))
    config = prunetune.load_config("quickstart")
    assert expected in _problems(lambda: prunetune.load_config(config, "trial.sparsity=0.7"))


# --------------------------------------------------------------------------- the command line and the search


def test_trial_output_naming_an_existing_file_is_a_clear_error(tmp_path, capsys):
    from prunetune.cli import main

    existing = tmp_path / "result.txt"
    existing.write_text("keep me")
    assert main(["trial", "quickstart", "--output", str(existing)]) == 2
    err = capsys.readouterr().err
    assert f"prunetune trial: error: 1 configuration problem:\n  - --output = '{existing}': an existing file; " \
           "expected a directory" in err
    assert "Traceback" not in err and existing.read_text() == "keep me"
    assert main(["trial", "quickstart", "--output", str(existing / "below")]) == 2
    assert f"inside '{existing}', an existing file" in capsys.readouterr().err
    assert main(["search", "quickstart", "--output", str(existing), "--no-wandb"]) == 2
    assert f"prunetune search: error: 1 configuration problem:\n  - --output = '{existing}': an existing file" in \
        capsys.readouterr().err


def test_a_data_error_in_the_teacher_task_reaches_the_user_without_rays_traceback(monkeypatch, tmp_path,
                                                                                   tiny_model_dir):
    import pandas as pd

    from prunetune.cluster import RunDir
    from prunetune.search import _driver
    from prunetune.trainables.training.data import load_task_data

    data = tmp_path / "one-class.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": ["sport"] * 40}).to_csv(data, index=False)
    config = C.validate({"task": {"dataset": str(data)}, "teacher": {"model": str(tiny_model_dir)}})
    _fake_ray(monkeypatch, lambda: load_task_data(config.task))
    with pytest.raises(DataError) as info:
        _driver._prepare_teacher(config, RunDir(tmp_path / "run"), None, types.SimpleNamespace(is_local=False),
                                 source_cache=None, stream=None)
    assert type(info.value) is DataError and "\x1b[" not in str(info.value)
    assert str(info.value).startswith("task.label_column = 'label' of ")
    assert "1 distinct label(s) ('sport'); classification needs at least 2" in str(info.value)


def _fake_ray(monkeypatch, work):
    """``ray.remote(...)(fn).remote(...)`` runs ``work`` here; ``ray.get`` returns its result or raises
    what a Ray task raises: a RayTaskError that is also the cause's class, traceback in colour."""
    import ray

    class Task:
        def remote(self, *args, **kwargs):
            try:
                return ("value", work())
            except Exception as exc:  # noqa: BLE001 (handed to ray.get as Ray would)
                wrapped = ray.exceptions.RayTaskError("_teacher_task", "\x1b[36mTraceback (most recent call last)"
                                                      "\x1b[39m ...", exc)
                return ("error", wrapped.as_instanceof_cause())

    def get(ref):
        kind, payload = ref
        if kind == "error":
            raise payload
        return payload

    monkeypatch.setattr(ray, "remote", lambda **_: (lambda fn: Task()))
    monkeypatch.setattr(ray, "get", get)


def test_every_fixed_case_leaves_valid_configs_alone(tmp_path):
    # The presets still load; a YAML anchor (a repeated node) is not a duplicate key.
    for name in C.preset_names():
        C.load(name, check_model=False)
    path = tmp_path / "anchors.yaml"
    path.write_text("space:\n  trial.sparsity: &range {uniform: [0.1, 0.5]}\n  trial.min_head_density: *range\n")
    assert yaml.safe_load(path.read_text())["space"]["trial.min_head_density"] == {"uniform": [0.1, 0.5]}
    assert C.load(path, check_model=False).space["trial.min_head_density"].high == 0.5
