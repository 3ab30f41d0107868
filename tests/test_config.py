import pytest

from prunetune import config as C
from prunetune.errors import ConfigError


def test_quickstart_preset_loads():
    config = C.load("quickstart")
    assert config.trial.method == "movement"
    assert config.teacher.model == "minilm-l6"


def test_set_overrides_parse_values_as_yaml():
    config = C.load("quickstart", ["trial.sparsity=0.7", "trial.precision=bf16", "trial.latency.batch_size=8"])
    assert config.trial.sparsity == 0.7
    assert config.trial.precision == "bf16"
    assert config.trial.latency.batch_size == 8


def test_every_problem_is_listed_at_once_with_key_and_value():
    with pytest.raises(ConfigError) as info:
        C.load("quickstart", [
            "trial.sparsity=1.0", "trial.temperature=0", "trial.alpha=1.5", "trial.precision=fp8",
            "trial.inference_precision=int4", "trial.method=random", "trial.colour=red",
            "trial.max_steps=abc", "teacher.epochs=-1",
        ])
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 9, text
    assert "trial.sparsity = 1.0" in text
    assert "trial.temperature = 0" in text
    assert "trial.alpha = 1.5" in text
    assert "trial.precision = 'fp8'" in text and "'fp32', 'fp16' or 'bf16'" in text
    assert "trial.inference_precision = 'int4'" in text
    assert "trial.method = 'random'" in text
    assert "trial.colour: unknown key; known keys:" in text
    assert "trial.max_steps = 'abc'" in text
    assert "teacher.epochs = -1" in text


def test_block_size_error_names_the_builtin_model_and_its_dimensions():
    raw = {"trial": {"block_size": 24}}
    with pytest.raises(ConfigError, match=r"trial.block_size = 24: .*minilm-l6 \(bert: hidden 384, 12 heads of 32"):
        C.validate(raw, check_model=True)


def test_block_size_is_checked_against_the_model(tiny_model_dir, tiny_dataset_csv, tmp_path):
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(tiny_model_dir, tiny_dataset_csv, tmp_path, block_size=64)
    with pytest.raises(ConfigError, match=r"trial.block_size = 64: .*hidden 32, 4 heads of 8.*valid: \[1, 2, 4, 8, 16, 32\]"):
        C.validate(raw, check_model=True)
    raw["trial"]["block_size"] = 16  # two whole heads per block: accepted
    assert C.validate(raw, check_model=True).trial.block_size == 16


def test_unknown_section_and_bad_schedule():
    with pytest.raises(ConfigError) as info:
        C.validate({"trail": {}, "trial": {"warmup_fraction": 0.6, "cooldown_fraction": 0.5}})
    text = str(info.value)
    assert "trail: unknown key; known keys: task, teacher, trial" in text
    assert "warmup_fraction + trial.cooldown_fraction must be < 1" in text


def test_missing_config_file_names_the_presets():
    with pytest.raises(ConfigError, match="no such file and no such preset; presets: .*quickstart"):
        C.load("does-not-exist.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        C.load("quickstart", ["trial.sparsity"])


def test_missing_dataset_file():
    with pytest.raises(ConfigError, match="task.dataset = 'nowhere.csv': file not found"):
        C.load("quickstart", ["task.dataset=nowhere.csv"])


def test_with_values_validates():
    config = C.load("quickstart")
    assert config.with_values({"trial.sparsity": 0.25}).trial.sparsity == 0.25
    with pytest.raises(ConfigError, match="trial.sparsity"):
        config.with_values({"trial.sparsity": -0.1})


def test_an_unsupported_architecture_is_refused_before_anything_loads(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "n_embd": 64}')
    with pytest.raises(ConfigError, match=r"architecture 'gpt2' is not supported; supported model types: bert, "
                                          r"roberta, xlm-roberta, electra, distilbert, deberta-v2"):
        C.validate({"teacher": {"model": str(tmp_path)}}, check_model=True)


def test_a_method_option_at_its_old_flat_key_names_the_new_one():
    with pytest.raises(ConfigError) as info:
        C.load("quickstart", ["trial.group_lasso_penalty=0.001", "trial.ranking_proxy=masked",
                              "trial.score_learning_rate=0.1"])
    assert info.value.problems == [
        "trial.group_lasso_penalty: moved to trial.group_lasso.penalty",
        "trial.ranking_proxy: moved to trial.test_time.ranking_proxy",
        "trial.score_learning_rate: moved to trial.movement.score_learning_rate",
    ]


def test_method_options_nest_under_the_method_and_may_be_searched():
    config = C.load("bbc-news", ["trial.method=group_lasso", "trial.group_lasso.penalty=0.001",
                                   "space.trial.group_lasso.reweight_every={int: [5, 50]}"])
    assert config.trial.group_lasso.penalty == 0.001
    assert config.space["trial.group_lasso.reweight_every"].high == 50


def test_reports_must_fit_in_the_trial():
    with pytest.raises(ConfigError, match=r"trial: trial.eval_every must be <= trial.max_steps .* got 80 > 60"):
        C.load("quickstart", ["trial.eval_every=80"])
    assert C.validate({"trial": {"max_steps": 10}}).trial.eval_every == 10  # unset: every 50, at most max_steps
    assert C.validate({"trial": {"max_steps": 300}}).trial.eval_every == 50


def test_a_large_space_is_still_checked_key_pair_by_key_pair():
    keys = ["sparsity", "temperature", "alpha", "min_head_density", "learning_rate", "warmup_fraction",
            "cooldown_fraction", "batch_size", "max_steps"]
    space = {f"space.trial.{key}": value for key, value in {
        "sparsity": "{uniform: [0.1, 0.9]}", "temperature": "{loguniform: [1.0, 8.0]}",
        "alpha": "{uniform: [0.5, 1.0]}", "min_head_density": "{uniform: [0.0, 0.5]}",
        "learning_rate": "{loguniform: [1.0e-5, 1.0e-3]}", "warmup_fraction": "{uniform: [0.0, 0.6]}",
        "cooldown_fraction": "{uniform: [0.0, 0.6]}", "batch_size": "{choice: [8, 16]}",
        "max_steps": "{int: [30, 60]}"}.items()}
    assert len(keys) == 9  # 2^9 = 512 corners: more than are checked one by one
    with pytest.raises(ConfigError, match=r"warmup_fraction=0.6, trial.cooldown_fraction=0.6\) is not a valid trial"):
        C.load("quickstart", [f"{key}={value}" for key, value in space.items()])


def test_a_config_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not a text file"):
        C.load(path)


def test_a_renamed_search_key_names_its_new_name():
    with pytest.raises(ConfigError, match="search.max_failures: moved to search.max_retries"):
        C.load("quickstart", ["search.max_failures=3"])


def test_a_target_speedup_replaces_the_sparsity_also_a_presets_searched_one():
    from prunetune import config as C

    fixed = C.load("bbc-news", ["trial.target_speedup=3", "space.trial.method={choice: [movement, magnitude]}"],
                   check_model=False)
    assert fixed.trial.sparsity is None and fixed.trial.target_speedup == 3.0
    assert "trial.sparsity" not in fixed.space
    searched = C.load("quickstart", ["space.trial.target_speedup={uniform: [1.5, 4.0]}"], check_model=False)
    assert "trial.sparsity" not in searched.space and searched.space["trial.target_speedup"].is_searched
    sampled = searched.with_trial_values({"trial.target_speedup": 2.5}).trial
    assert sampled.sparsity is None and sampled.target_speedup == 2.5


def test_a_target_speedup_needs_a_method_that_prunes_to_one():
    from prunetune import config as C

    with pytest.raises(ConfigError, match="group_lasso prunes to trial.sparsity; methods that prune to a speed-up"):
        C.load("quickstart", ["trial.method=group_lasso", "trial.target_speedup=2"], check_model=False)
    with pytest.raises(ConfigError, match="space.trial.method offers group_lasso"):
        C.load("bbc-news", ["trial.target_speedup=2"], check_model=False)
    with pytest.raises(ConfigError, match=r"trial.target_speedup = 1.0: Input should be greater than 1"):
        C.load("quickstart", ["trial.target_speedup=1.0"], check_model=False)
