import pytest

from pipeline.config import load_config
from stages.base import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_sample_config_loads_with_defaults():
    config = load_config("configs/sample.yaml")
    assert config.run.stages[:3] == ["ingest", "duration", "silence"]
    assert config.stage_params["silence"].max_silent_fraction == 0.8
    assert config.stage_params["duration"].min_seconds == 10.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("stages:\n  silence: {max_silent_fraktion: 0.5}\n", r"stages.silence: unknown setting\(s\) \['max_silent_fraktion'\]"),
        ("stages:\n  silence: {max_silent_fraction: high}\n", "stages.silence.max_silent_fraction: expected float, got str"),
        ("stages:\n  silence: {max_silent_fraction: 1.5}\n", r"max_silent_fraction: must be in \[0, 1\]"),
        ("stages:\n  duration: {windows: some}\n", "stages.duration.windows: must be 'first' or 'all'"),
        ("run: {stages: [ingest, silence, duration]}\n", "stages must appear once each in pipeline order"),
        ("run: {stages: [duration]}\n", "the first stage must be ingest"),
        ("run: {stages: [ingest, localize, render, convert]}\n", "render stage is now convert's mode `sh`"),
        ("run: {chunk_size: 0}\n", "run.chunk_size: must be a positive integer"),
        ("runn: {}\n", r"unknown top-level section\(s\) \['runn'\]"),
        ("stages:\n  silense: {}\n", r"stages: unknown stage\(s\) \['silense'\]"),
        ("executor: {name: spark}\n", "executor.name: 'spark' is not one of ray, local"),
        ("run: [1, 2\n", "not valid YAML"),
    ],
)
def test_malformed_config_names_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_overrides_reach_nested_stage_settings():
    config = load_config("configs/sample.yaml", {"stages.silence.max_silent_fraction": 0.5, "run.chunk_size": 3})
    assert config.stage_params["silence"].max_silent_fraction == 0.5
    assert config.run.chunk_size == 3
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.yaml")


@pytest.mark.parametrize(
    "stage, key, value, text",
    [("convert", "num_gpus", -1.0, ">= 0"), ("quality", "num_cpus", 0.0, "> 0"), ("localize", "batch_size", 0, ">= 1")],
)
def test_resource_settings_are_checked_for_every_stage(stage, key, value, text):
    with pytest.raises(ConfigError, match=rf"stages.{stage}.{key}: must be {text}, got {value}"):
        load_config("configs/sample.yaml", {f"stages.{stage}.{key}": value})
