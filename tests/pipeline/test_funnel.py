"""The end-of-build table: every column lines up, whatever the stage names."""

from pipeline.funnel import format_funnel


def test_columns_line_up_with_long_stage_names():
    stage = {"in": 17, "kept": 16, "dropped": {"too short": 1}, "failed": {}, "wall_s": 39.2, "state": "ran"}
    stats = {"input": {"rows": 24, "rejected": 0, "format": "csv"},
             "stages": {"ingest": {**stage, "in": 24}, "train_localizer": stage, "localize": stage}}
    lines = format_funnel(stats).splitlines()
    header = lines[0]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(" ")}
    assert set(rows) >= {"input", "ingest", "train_localizer", "localize"}
    end_of_in = header.index(" in") + len(" in")  # the right edge of the `in` column
    for name, line in rows.items():
        assert line[:end_of_in].split()[-1].isdigit(), (name, line)  # the count ends where the header does
        assert line[end_of_in] == " ", (name, line)
    assert "dropped: too short x1" in format_funnel(stats)
