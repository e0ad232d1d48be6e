"""One logging configuration: records of any module reach console and build.log; progress lines; bars."""

import io
import logging
import os
import re
import sys

import pytest

from pipeline import logs
from runhelpers import build_run, copy_run


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.close_build_log()
    root.handlers, root.level = handlers, level
    logs.ConsoleFilter.bars = False


def test_any_module_reaches_console_and_build_log(tmp_path, monkeypatch, capsys, restore_logging):
    logs.configure(str(tmp_path), bars=False)
    logging.getLogger("binauralizer.pseudobinaural.training").info("step 3 of 9")
    logging.getLogger("stages.quality").warning("no checkpoint")
    logging.getLogger("pipeline").info("only in the file", extra={"console": False})
    logging.getLogger("matplotlib.font_manager").info("chatter")  # third-party INFO stays out
    logs.close_build_log()
    text = (tmp_path / "logs" / "build.log").read_text()
    console = capsys.readouterr().err
    assert "INFO binauralizer.pseudobinaural.training: step 3 of 9" in text
    assert "WARNING stages.quality: no checkpoint" in text and "only in the file" in text
    assert "step 3 of 9" in console and "no checkpoint" in console
    assert "only in the file" not in console and "chatter" not in console + text


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    return now


def test_progress_lines_every_tenth_with_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO, logger="test")
    bar = logs.Progress(logging.getLogger("test"), "localize", total=20, unit="clip", every_s=1e9)
    for _ in range(20):
        clock[0] += 2.0  # a clip every 2 s
        bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # 2/20, 4/20, ... 20/20
    assert lines[0] == "localize: 2/20 clips (10 %), 0.5 clips/s, ETA 36 s"
    assert lines[-1] == "localize: 20/20 clips (100 %), 0.5 clips/s, finished"
    assert all(r.progress for r in caplog.records)


def test_a_fast_stage_reads_its_rate_in_plain_digits(clock, caplog):
    caplog.set_level(logging.INFO, logger="test")
    bar = logs.Progress(logging.getLogger("test"), "duration", total=24, unit="clip", every_s=1e9)
    clock[0] += 0.0195  # 24 clips in 19.5 ms: 1231 clips/s, which "{:.3g}" wrote as 1.23e+03
    bar.update(24)
    assert [r.getMessage() for r in caplog.records] == ["duration: 24/24 clips (100 %), 1231 clips/s, finished"]


def test_progress_of_a_resumed_training_counts_only_this_run(clock, caplog):
    caplog.set_level(logging.INFO, logger="test")
    bar = logs.Progress(logging.getLogger("test"), "train_unet", total=1000, unit="step", every_s=1e9, resumed=True)
    for step in range(601, 701):  # resumed at step 600 from a checkpoint: 0.25 steps/s, not 600 steps in 4 s
        clock[0] += 4.0
        bar.update_to(step, 1000, loss=0.125)
    assert [r.getMessage() for r in caplog.records] == [
        "train_unet: 601/1000 steps (60 %), loss 0.125",
        "train_unet: 700/1000 steps (70 %), 0.25 steps/s, ETA 20 min 00 s, loss 0.125",
    ]


def test_progress_line_at_least_every_minute(clock, caplog):
    caplog.set_level(logging.INFO, logger="test")
    bar = logs.Progress(logging.getLogger("test"), "convert", total=1_000_000, unit="clip")
    for _ in range(30):
        clock[0] += 10.0
        bar.update(100)
    assert len(caplog.records) == 5  # 300 s of work under the first tenth: a line each 60 s
    assert caplog.records[-1].getMessage() == "convert: 3000/1000000 clips (0 %), 10 clips/s, ETA 1 d 3 h 41 min"


def test_bars_and_log_lines_do_not_interleave(tmp_path, monkeypatch, restore_logging):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    logs.configure(str(tmp_path), bars=True)
    log = logging.getLogger("pipeline")
    with logs.bars_above_logs(True):
        bar = logs.Progress(log, "silence", total=4, bar=True, every_s=1e9)
        for i in range(4):
            bar.update(1)
            log.info("decoded clip %d", i)
        bar.close()
    logs.close_build_log()
    screen = terminal.getvalue()
    # every log line starts on a line of its own (tqdm clears the bar, prints the line, redraws the bar)
    assert len(re.findall(r"(^|\n|\r)\d\d:\d\d:\d\d decoded clip \d\n", screen)) == 4
    assert "silence: 4/4" not in screen  # progress lines stay off the console while a bar shows them
    assert "|" in screen and "4/4" in screen  # the bar itself
    text = (tmp_path / "logs" / "build.log").read_text()
    assert "silence: 4/4 clips (100 %)" in text and "decoded clip 3" in text
    assert not any(c in text for c in ("\r", "\x1b", "\u2588", "%|"))


def test_build_log_shows_stages_rates_and_the_end_also_on_a_rerun(local_run, sample_dir, tmp_path):
    out, _ = local_run
    text = open(os.path.join(out, "logs", "build.log")).read()
    for stage_no, (name, kind) in enumerate([("ingest", "task"), ("duration", "task"), ("silence", "task"),
                                              ("quality", "actor")], start=1):
        assert f"stage {stage_no} of 4: {name} ({kind}): 3 of 3 chunks to run" in text
        assert re.search(rf"{name}: \d+/\d+ clips \(100 %\), [\d.]+ clips/s, finished", text), name
    assert re.search(r"ingest: 8/24 clips \(33 %\), [\d.]+ clips/s, ETA \d+", text)
    assert re.search(r"build finished in .*: 24 clips in, 17 kept, 4 dropped, 3 failed\n$", text)
    copy = copy_run(out, str(tmp_path / "copy"))
    build_run(sample_dir, copy)
    rerun = open(os.path.join(copy, "logs", "build.log")).read()[len(text):]
    assert "stage 2 of 4: duration done earlier (all 3 chunks match the settings)" in rerun
    assert "dropped: mostly silent x2" in rerun  # the funnel, in the file
    assert re.search(r"build finished in \d+ s: 24 clips in, 17 kept, 4 dropped, 3 failed\n$", rerun)
