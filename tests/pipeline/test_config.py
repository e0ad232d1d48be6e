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
        ("stages:\n  silence: {max_silent_fraktion: 0.5}\n",
         r"stages.silence.max_silent_fraktion: unknown setting \(did you mean 'max_silent_fraction'\?\)"),
        ("stages:\n  silence: {max_silent_fraction: high}\n",
         "stages.silence.max_silent_fraction: Input should be a valid number, got str 'high'"),
        ("stages:\n  quality: {num_gpus: '1'}\n", "stages.quality.num_gpus: Input should be a valid number, got str '1'"),
        ("stages:\n  convert: {window_batch: 1.5}\n", "stages.convert.window_batch: Input should be a valid integer"),
        ("stages:\n  silense: {}\n", r"stages.silense: unknown stage \(did you mean 'silence'\?\)"),
        ("run: {stages: [ingest, duraton]}\n", r"unknown stage 'duraton' \(did you mean 'duration'\?\)"),
        ("executor: {name: rey}\n", r"executor.name: 'rey' is not one of ray, local \(did you mean 'ray'\?\)"),
        ("spatial: {fov: 90}\n", r"spatial.fov: unknown setting \(did you mean 'fov_deg'\?\)"),
        ("spatial: {decoder: lsqq}\n", r"spatial.decoder: expected one of .* \(did you mean 'lsq'\?\)"),
        ("run: {sample_rate: 44100}\n", "run.sample_rate: the models and metrics are defined at 16000 Hz"),
        ("spatial: {hrir: kemar}\nstages:\n  localize: {fov_deg: 90}\n  convert: {hrir: sonicom-1}\n",
         r"stages.convert.hrir = 'sonicom-1' disagrees with spatial.hrir = 'kemar'"),
        ("stages:\n  silence: {max_silent_fraction: 1.5}\n", r"max_silent_fraction: must be in \[0, 1\]"),
        ("stages:\n  duration: {windows: some}\n", "stages.duration.windows: must be 'first' or 'all'"),
        ("run: {stages: [ingest, silence, duration]}\n", "silence reads duration's files, so duration must come before it"),
        ("run: {stages: [duration]}\n", "the first stage must be ingest"),
        ("run: {stages: [ingest, localize, render, convert]}\n", "render stage is now convert's mode `sh`"),
        ("run: {chunk_size: 0}\n", "run.chunk_size: must be a positive integer"),
        ("runn: {}\n", r"runn: unknown top-level section \(did you mean 'run'\?\)"),
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
    [("convert", "num_gpus", -1.0, ">= 0"), ("quality", "num_cpus", 0.0, "> 0"), ("localize", "batch_size", 0, ">= 1"),
     ("train_localizer", "ensemble", 0, ">= 1")],
)
def test_resource_settings_are_checked_for_every_stage(stage, key, value, text):
    with pytest.raises(ConfigError, match=rf"stages.{stage}.{key}: must be {text}, got {value}"):
        load_config("configs/sample.yaml", {f"stages.{stage}.{key}": value})


def test_spatial_section_is_one_setting_for_every_stage_and_old_keys_still_work(tmp_path):
    config = load_config("configs/sample.yaml")
    assert config.spatial.hrir == "kemar" and config.spatial.fov_deg == 120.0
    old = write(tmp_path, "run: {sample_rate: 16000, stages: [ingest, duration, localize, train_unet, convert]}\n"
                          "stages:\n  localize: {fov_deg: 90.0}\n  train_unet: {hrir: sonicom-1}\n")
    config = load_config(old)  # YAML written before spatial: moved, not refused
    assert (config.spatial.fov_deg, config.spatial.hrir) == (90.0, "sonicom-1")
    assert "sample_rate" not in config.to_dict()["run"] and config.to_dict()["spatial"]["fov_deg"] == 90.0
