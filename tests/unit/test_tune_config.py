"""Tune config validation and the search-space checks that run before Ray starts."""

from __future__ import annotations

import pytest

from llmops_ray.config import CONFIGS_DIR, UserError, load_config
from llmops_ray.tune.config import SearchDim, TuneSearchConfig
from llmops_ray.tune.search import _set_dotted, base_finetune_dict


def test_shipped_tune_configs_load_and_start_with_a_comment():
    paths = sorted(CONFIGS_DIR.glob("tune_*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text()
        assert text.startswith("#") and "llmops tune --config" in text.splitlines()[2] + text.splitlines()[1]
        config = load_config(TuneSearchConfig, path.stem)
        assert config.space and config.registration.stack


@pytest.mark.parametrize(
    "dim,fragment",
    [
        ({"type": "choice"}, "needs 'values'"),
        ({"type": "uniform", "low": 1, "high": 1}, "low < high"),
        ({"type": "loguniform", "low": 0, "high": 1}, "low > 0"),
        ({"type": "normal", "low": 0, "high": 1}, "type"),
    ],
)
def test_bad_dimensions(dim, fragment):
    with pytest.raises(UserError) as err:
        load_config(TuneSearchConfig, None, [f"space={{x: {dim}}}".replace("'", "")])
    assert fragment in str(err.value)


def test_dimensions_map_to_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    assert isinstance(SearchDim(type="loguniform", low=1e-4, high=1e-2).to_tune(), Float)
    assert isinstance(SearchDim(type="randint", low=1, high=4).to_tune(), Integer)
    assert isinstance(SearchDim(type="choice", values=[4, 8]).to_tune(), Categorical)


def test_set_dotted():
    data = {"optim": {"lr": 1.0}}
    _set_dotted(data, "optim.lr", 2.0)
    _set_dotted(data, "lora.rank", 4)
    assert data == {"optim": {"lr": 2.0}, "lora": {"rank": 4}}


def test_unknown_space_key_and_missing_base_fail_early(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    good = ["space={optim.lr: {type: loguniform, low: 0.0001, high: 0.01}}", f"data={data}",
            f"base_model={tiny_model_dir}"]
    config = load_config(TuneSearchConfig, "tune_asha_tiny_cpu", good)
    base = base_finetune_dict(config)
    assert base["workers"]["num_workers"] == 1 and base["data"]["path"] == str(data.resolve())
    assert base["mlflow_experiment"] == "tune/tune-asha-tiny" and base["optim"]["max_steps"] == 8
    typo = load_config(TuneSearchConfig, "tune_asha_tiny_cpu", good + ["space={optim.lrr: {type: choice, values: [1]}}"])
    with pytest.raises(UserError, match="unknown key 'optim.lrr'"):
        base_finetune_dict(typo)
    missing = load_config(TuneSearchConfig, "tune_asha_tiny_cpu", good + [f"base_model={tmp_path / 'none'}"])
    with pytest.raises(UserError, match="does not exist"):
        base_finetune_dict(missing)


@pytest.mark.parametrize("key, shared", [("optim.lr", True), ("lora.rank", True), ("optim.micro_batch_size", True),
                                         ("data.max_seq_len", False), ("data.packing", False), ("base_model", False),
                                         ("optim.seed", False), ("workers.num_workers", False)])
def test_trials_share_one_tokenization_unless_the_space_changes_the_data(key, shared):
    from llmops_ray.tune.search import shares_datasets

    config = load_config(TuneSearchConfig, "tune_asha_tiny_cpu", [f"space={{{key}: {{type: choice, values: [1, 2]}}}}"])
    assert shares_datasets(config) is shared
    for name in ("tune_asha_tiny_cpu", "tune_optuna_tiny_cpu"):  # the shipped searches share theirs
        assert shares_datasets(load_config(TuneSearchConfig, name))


def test_shared_datasets_of_other_data_settings_are_refused(tiny_model_dir, tmp_path):
    from llmops_ray.train.config import FinetuneConfig
    from llmops_ray.models.base import file_hash
    from llmops_ray.train.sft import SharedDatasets, _dataset_key, prepare, resolve_base_model

    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    config = load_config(FinetuneConfig, "sft_lora_tiny_cpu", [f"data.path={data}", f"base_model={tiny_model_dir}"])
    model, sha = resolve_base_model(config.base_model), file_hash([str(data)])
    key = _dataset_key(config, model, sha)
    other = config.model_copy(update={"data": config.data.model_copy(update={"max_seq_len": 32})})
    assert _dataset_key(other, model, sha) != key
    assert _dataset_key(config.model_copy(update={"optim": config.optim.model_copy(update={"lr": 0.5})}), model, sha) == key
    # Refused before Ray starts or anything is tokenized.
    with pytest.raises(ValueError, match="built for other data settings"):
        prepare(other, shared=SharedDatasets(key, train=None, validation=None, stats={}))
