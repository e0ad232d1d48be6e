import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.readers import ManifestError, read_input
from manifests.schema import unsafe_id_reason


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_vggsound_csv_names_files_like_the_downloaders(tmp_path):
    path = write(tmp_path, "vggsound.csv", '---g-f_I2yQ,1,people marching,test\nabcdefghijk,30,"playing violin, fiddle",train\n')
    m = read_input(path, media_root="/data/vgg")
    assert m.format == "vggsound"
    assert [r["clip_id"] for r in m.rows] == ["---g-f_I2yQ_000001", "abcdefghijk_000030"]
    assert m.rows[0]["video"] == "/data/vgg/---g-f_I2yQ_000001.mp4"
    assert m.rows[1]["label"] == "playing violin, fiddle"
    assert [r["split"] for r in m.rows] == ["test", "train"]


def test_vggsound_bad_row_names_the_line(tmp_path):
    path = write(tmp_path, "vggsound.csv", "aaaaaaaaaaa,1,dog,train\nbbbbbbbbbbb,x,dog,train\n")
    with pytest.raises(ManifestError, match="line 2: start_seconds 'x'"):
        read_input(path)
    path = write(tmp_path, "v2.csv", "aaaaaaaaaaa,1,dog,train\nbbbbbbbbbbb,1,dog\n")
    with pytest.raises(ManifestError, match="line 2: VGGSound rows have 4 fields"):
        read_input(path)


def test_csv_with_header_and_optional_columns(tmp_path):
    path = write(tmp_path, "m.csv", "clip_id,video,label,start,end\na,clips/a.mp4,dog,1.5,11.5\nb,/abs/b.mkv,,,\nc,s3://bucket/c.mp4,cat,,\n")
    m = read_input(path, media_root=str(tmp_path), allow_outside_root=True)
    assert [r["clip_id"] for r in m.rows] == ["a", "b", "c"]
    assert m.rows[0]["video"] == str(tmp_path / "clips" / "a.mp4")
    assert (m.rows[0]["start"], m.rows[0]["end"]) == (1.5, 11.5)
    assert m.rows[1]["video"] == "/abs/b.mkv" and m.rows[1]["label"] is None
    assert m.rows[2]["video"] == "s3://bucket/c.mp4"
    assert m.rows[1]["split"] == "train"


def test_csv_missing_column_and_ragged_row(tmp_path):
    with pytest.raises(ManifestError, match=r"line 1: header lacks required column\(s\) \['video'\]"):
        read_input(write(tmp_path, "a.csv", "clip_id,label\nx,dog\n"))
    with pytest.raises(ManifestError, match="line 3: expected 2 fields"):
        read_input(write(tmp_path, "b.csv", "clip_id,video\nx,x.mp4\ny,y.mp4,extra\n"))
    with pytest.raises(ManifestError, match="line 2: start 'soon' is not a number"):
        read_input(write(tmp_path, "c.csv", "clip_id,video,start\nx,x.mp4,soon\n"))
    with pytest.raises(ManifestError, match="line 2: end .* must be greater than start"):
        read_input(write(tmp_path, "d.csv", "clip_id,video,start,end\nx,x.mp4,5,2\n"))


def test_jsonl_and_parquet(tmp_path):
    rows = [{"clip_id": "a", "video": "a.mp4", "caption": "a dog"}, {"clip_id": "b", "video": "b.mp4", "split": "test"}]
    path = write(tmp_path, "m.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    m = read_input(path, media_root="/m")
    assert [r["video"] for r in m.rows] == ["/m/a.mp4", "/m/b.mp4"] and m.rows[0]["caption"] == "a dog"
    with pytest.raises(ManifestError, match="line 2: not valid JSON"):
        read_input(write(tmp_path, "bad.jsonl", '{"clip_id": "a", "video": "a.mp4"}\n{"clip_id": \n'))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    m2 = read_input(str(tmp_path / "m.parquet"), media_root="/m")
    assert [r["clip_id"] for r in m2.rows] == ["a", "b"] and m2.format == "parquet"
    pq.write_table(pa.table({"clip_id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['video'\]"):
        read_input(str(tmp_path / "bad.parquet"))


@pytest.mark.parametrize(
    "clip_id, fragment",
    [
        ("a/b", "path separator"), ("a\\b", "path separator"), ("..", "'..'"), (".hidden", "starts with a dot"),
        ("a\tb", "control characters"), ("x" * 201, "longer than 200"), ("", "empty"), ("a.b", "contains '.'"),
        (" a", "whitespace"),
    ],
)
def test_unsafe_ids_have_reasons(clip_id, fragment):
    assert fragment in unsafe_id_reason(clip_id)


def test_unsafe_and_duplicate_ids_are_rejected_not_changed(tmp_path):
    path = write(tmp_path, "m.csv", "clip_id,video\nok_1,a.mp4\n../evil,b.mp4\nok_1,c.mp4\nok_2,\nok_3,d.mp4\n")
    m = read_input(path)
    assert [r["clip_id"] for r in m.rows] == ["ok_1", "ok_3"]
    reasons = {(r["line"], r["clip_id"]): r["reason"] for r in m.rejected}
    assert reasons[(3, "../evil")] == "clip_id contains a path separator"
    assert reasons[(4, "ok_1")] == "duplicate clip_id (first seen on line 2)"
    assert reasons[(5, "ok_2")] == "empty video path"
    assert unsafe_id_reason("YbQ-x_9Tz0A_000030") is None


def test_unterminated_quote_names_its_line(tmp_path):
    body = "clip_id,video,label\na,a.mp4,dog\nb,b.mp4,\"cat barking\n" + "".join(f"c{i},c{i}.mp4,bird\n" for i in range(5000))
    with pytest.raises(ManifestError, match="line 3: a quote opened on this line is never closed"):
        read_input(write(tmp_path, "q.csv", body))


def test_quote_that_swallows_lines_is_refused_not_merged(tmp_path):
    body = "clip_id,video,label\na,a.mp4,dog\nb,b.mp4,\"cat\nc,c.mp4,bird\nd,d.mp4,\"owl\"\n"
    with pytest.raises(ManifestError, match="line 3: a quoted value runs over several lines"):
        read_input(write(tmp_path, "s.csv", body))
    vgg = "aaaaaaaaaaa,1,\"dog,train\nbbbbbbbbbbb,2,cat,train\n"
    with pytest.raises(ManifestError, match="line 1: a quote opened on this line is never closed"):
        read_input(write(tmp_path, "v.csv", vgg))


def test_quoted_commas_and_blank_lines_keep_line_numbers(tmp_path):
    body = "\nclip_id,video,label\n\na,a.mp4,\"dog, barking\"\n../x,x.mp4,cat\n"
    m = read_input(write(tmp_path, "ok.csv", body))
    assert [(r["clip_id"], r["label"]) for r in m.rows] == [("a", "dog, barking")]
    assert [(r["line"], r["clip_id"]) for r in m.rejected] == [(5, "../x")]


def test_rows_outside_media_root_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    body = "clip_id,video\nin,a/b.mp4\nup,../x.mp4\nabs,/etc/passwd\nurl,s3://bucket/c.mp4\nsneaky,a/../../y.mp4\n"
    m = read_input(write(tmp_path, "m.csv", body), media_root=str(root))
    assert [r["clip_id"] for r in m.rows] == ["in"]
    reasons = {r["clip_id"]: r["reason"] for r in m.rejected}
    assert set(reasons) == {"up", "abs", "url", "sneaky"}
    assert all(r.startswith("video outside MEDIA_ROOT:") and "allow_media_outside_root" in r for r in reasons.values())
    assert len(read_input(write(tmp_path, "m.csv", body), media_root=str(root), allow_outside_root=True).rows) == 5
    # without a MEDIA_ROOT there is nothing to be outside of
    assert len(read_input(write(tmp_path, "m.csv", body)).rows) == 5
