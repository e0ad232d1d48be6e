"""The command line as a user meets it: help texts, exit codes, status, error messages."""

import os
import subprocess
import sys

import pytest

from runhelpers import ROOT


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [[], ["build"], ["status"], ["sample"]])
def test_every_command_has_help(command):
    result = cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: python -m pipeline" in result.stdout
    if command == ["build"]:
        for flag in ("--config", "--input", "--media-root", "--out", "--executor", "--from", "--only", "--force"):
            assert flag in result.stdout


def test_status_reports_chunks_and_counts(local_run):
    out, _ = local_run
    result = cli("status", "--out", out)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert lines["ingest"][1:] == ["3/3", "0", "0", "21", "0", "3"]  # done, pending, stale, kept, dropped, failed
    assert lines["silence"][1:] == ["3/3", "0", "0", "17", "2", "0"]
    assert "state: complete (no build running" in result.stdout
    assert cli("status", "--out", os.path.join(out, "nope")).returncode == 2


def test_console_command_and_version():
    import tomllib
    from importlib.metadata import EntryPoint

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["scripts"]["binauralize"] == "pipeline.cli:main"
    main = EntryPoint("binauralize", project["scripts"]["binauralize"], "console_scripts").load()
    code = ("import sys; sys.argv[0] = '/venv/bin/binauralize'; from importlib.metadata import EntryPoint; "
            f"sys.exit(EntryPoint('binauralize', {project['scripts']['binauralize']!r}, 'x').load()())")
    shown = subprocess.run([sys.executable, "-c", code, "--version"], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.strip() == f"binauralize {project['version']}"
    usage = subprocess.run([sys.executable, "-c", code, "status", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert usage.stdout.startswith("usage: binauralize status")
    assert cli("--version").stdout.strip() == f"binauralize {project['version']}"  # python -m pipeline too
    assert callable(main)


@pytest.mark.parametrize("args, expected", [
    (["biuld", "--help"], "invalid choice: 'biuld' (choose from 'build', 'status', 'sample') (did you mean 'build'?)"),
    (["build", "--config", "c", "--input", "i", "--out", "o", "--executor", "rya"], "(did you mean 'ray'?)"),
])
def test_typos_get_the_closest_valid_name(args, expected):
    result = cli(*args)
    assert result.returncode == 2 and expected in result.stderr


def test_typo_in_a_stage_name_stops_before_any_work(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("clip_id,video\na,a.mp4\n")
    out = tmp_path / "o"
    result = cli("build", "--config", "configs/sample.yaml", "--input", str(manifest), "--out", str(out),
                 "--from", "silense")
    assert result.returncode == 2
    assert "error: --from silense: not a stage of this run (did you mean 'silence'?)" in result.stderr
    assert not out.exists()


def test_malformed_manifest_stops_before_any_work(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("clip_id,video\na,a.mp4\nb,b.mp4,oops\n")
    out = tmp_path / "out"
    result = cli("build", "--config", "configs/sample.yaml", "--input", str(bad), "--out", str(out), "--executor", "local")
    assert result.returncode == 2
    assert "error: line 3: expected 2 fields" in result.stderr
    assert not out.exists()


def test_bad_config_value_names_the_key(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("clip_id,video\na,a.mp4\n")
    result = cli("build", "--config", "configs/sample.yaml", "--input", str(manifest), "--out", str(tmp_path / "o"),
                 "--set", "stages.silence.aggressiveness=7")
    assert result.returncode == 2
    assert "stages.silence.aggressiveness: must be 0, 1, 2 or 3, got 7" in result.stderr
