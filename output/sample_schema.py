"""The one sample schema: a shard sample's members and the fields of its json member.

Everything that describes a sample is generated from here: the shard stage checks every json
member against `JSON_FIELDS` before writing it, the dataset card's member and field tables and its
`dataset_info.features` (what lets `datasets.load_dataset(OUT)` work without this project) come
from `MEMBERS`, and `hf_features()` is the same as a `datasets.Features`.

Media members are declared as binary on purpose: `datasets` would otherwise decode audio and video
with torchcodec; decode the FLAC with soundfile instead. `.npy` members are nested float32 lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from binauralizer.constants import SAMPLE_RATE
from binauralizer.localize.features import FEATURE_NAMES


@dataclass(frozen=True)
class Field:
    """One json field: `dtype` is a Hugging Face value type (string, float64, int64, bool) or struct."""

    name: str
    dtype: str
    doc: str
    fields: tuple["Field", ...] = ()


@dataclass(frozen=True)
class Member:
    """One file of a sample in the tar: `<key>.<suffix>`. `kind`: binary, npy (T x columns) or json."""

    suffix: str
    kind: str
    doc: str
    columns: tuple[tuple[str, str], ...] = ()
    optional: bool = False  # absent when a setting turns it off (mp4 with stages.shard.video: none)


def _floats(names, doc: str) -> tuple[Field, ...]:
    return tuple(Field(n, "float64", doc) for n in names)


SPATIAL_COLUMNS = tuple(zip(FEATURE_NAMES, (
    "horizontal centroid of the sounding-object heatmap, 0 = left edge of the picture, 1 = right edge",
    "share of the frame covered by the heatmap above half its maximum",
    "spread of the heatmap (x variance + y variance, in units of the frame size squared)",
    "(energy in the right half - energy in the left half) / total energy, -1 to 1",
    "anisotropy of the spread: x variance / y variance",
)))
TRAJ_COLUMNS = (
    ("azimuth_deg", "degrees, positive to the LEFT (SOFA convention), 0 = straight ahead"),
    ("elevation_deg", "degrees, positive up"),
    ("distance_m", "metres"),
)
QUALITY_SCORES = ("aes_ce", "aes_cu", "aes_pc", "aes_pq", "dsp_clipping", "dsp_bandwidth_hz", "dsp_snr_db", "dsp_score")
SPATIAL_METRICS = ("iacc", "ild_db", "itd_ms", "isd_db", "ipd_rad", "lateral_agree")
TRAJECTORY_ANGLES = ("az_start_deg", "az_end_deg", "az_mean_deg", "az_min_deg", "az_max_deg", "el_mean_deg")

JSON_FIELDS: tuple[Field, ...] = (
    Field("clip_id", "string", "the sample key: the input's clip id (with a window suffix when a clip gave several)"),
    Field("label", "string", "class label from the input manifest (VGGSound's label)"),
    Field("caption", "string", "the input's caption, else a sentence made from the label"),
    Field("spatial_caption", "string", "where the sound is and how it moves, from the trajectory "
                                       "('on the left, moving to the right')"),
    Field("split", "string", "the split this sample belongs to (names the shard files)"),
    Field("source_id", "string", "the source video's clip id (several windows may share one)"),
    Field("window", "struct", "where the 10 s window lies in the source", (
        Field("index", "int64", "window number within the source"),
        Field("start_s", "float64", "window start in the source video, seconds"),
        Field("end_s", "float64", "window end in the source video, seconds"),
        Field("start_sample", "int64", f"window start in the decoded {SAMPLE_RATE} Hz audio, samples"),
        Field("padded_samples", "int64", "zero samples appended when the source was shorter than the window"),
    )),
    Field("duration_s", "float64", "window length, seconds"),
    Field("sample_rate", "int64", "audio sample rate of the flac members, Hz"),
    Field("silent_fraction", "float64", "share of the window judged silent (WebRTC VAD + energy gate)"),
    Field("quality", "struct", "audio quality scores of the source (null where the backend does not give them)", (
        Field("backend", "string", "which scorer: audiobox (Meta Audiobox Aesthetics) or dsp (signal-based fallback)"),
        *_floats(QUALITY_SCORES[:4], "Audiobox Aesthetics score, 1 to 10 (CE, CU, PC, PQ)"),
        Field("dsp_clipping", "float64", "share of clipped samples"),
        Field("dsp_bandwidth_hz", "float64", "estimated audio bandwidth, Hz"),
        Field("dsp_snr_db", "float64", "estimated signal-to-noise ratio, dB"),
        Field("dsp_score", "float64", "the dsp scorer's overall score, 1 to 10"),
    )),
    Field("conversion_mode", "string", "how the binaural audio was made: unet, direct, sh or mono"),
    Field("spatial_metrics", "struct", "measured on the binaural audio (definitions in the card)", (
        Field("iacc", "float64", "interaural cross-correlation maximum within +-1 ms, 0 to 1"),
        Field("ild_db", "float64", "mean |interaural level difference|, dB"),
        Field("itd_ms", "float64", "mean |interaural time difference|, ms"),
        Field("isd_db", "float64", "spectral spread of the interaural level spectrum, dB"),
        Field("ipd_rad", "float64", "mean |interaural phase difference|, radians"),
        Field("lateral_agree", "float64", "share of off-centre segments whose ILD side matches the picture's side"),
    )),
    Field("trajectory", "struct", "summary of traj.npy", (
        *_floats(TRAJECTORY_ANGLES, "degrees (azimuth positive to the left)"),
        Field("distance_mean_m", "float64", "mean source distance, metres"),
        Field("frames", "int64", "rows in traj.npy and spatial.npy"),
        Field("fps", "float64", "frames per second of those rows"),
        Field("method", "string", "the localiser that produced the trajectory"),
        Field("confidence", "float64", "the localiser's confidence, 0 to 1"),
        Field("centre_pull", "float64", "mean share of the position low confidence gave to the picture centre, 0 to 1"),
        Field("model", "string", "the learned localiser's content digest (sha256:...), null for weight-free methods"),
    )),
    Field("media", "struct", "how the media members were written", (
        Field("video", "string", "copy (stream-copied from a keyframe) or encode (re-encoded H.264); null without mp4"),
        Field("mp4_audio", "bool", "whether the mp4 carries an audio track (false by default)"),
        Field("flac_subtype", "string", "FLAC sample format, e.g. PCM_16"),
        Field("clipped_samples", "int64", "binaural samples clipped to [-1, 1] when encoding"),
        Field("clipped_samples_mono", "int64", "mono samples clipped to [-1, 1] when encoding"),
    )),
)

MEMBERS: tuple[Member, ...] = (
    Member("mp4", "binary", "the clip's exact window of the source video, H.264, NO audio track (the sound is in "
                            "the flac members); stream-copied when the window starts on a keyframe, else re-encoded",
           optional=True),
    Member("flac", "binary", f"binaural audio: 2 channels (left first), {SAMPLE_RATE} Hz"),
    Member("mono.flac", "binary", f"the source (mono) audio of the same window, {SAMPLE_RATE} Hz"),
    Member("json", "json", "metadata: the fields listed below"),
    Member("spatial.npy", "npy", "float32 (T, 5): per-frame spatial features of the sounding object (SpatialV2A "
                                 "eq. 4-5); T = 0 when the clip was not localised", SPATIAL_COLUMNS),
    Member("traj.npy", "npy", "float32 (T, 3): the sound source's direction per frame; T = 0 when the clip was "
                              "not localised", TRAJ_COLUMNS),
)


def members(with_video: bool = True) -> tuple[Member, ...]:
    return tuple(m for m in MEMBERS if with_video or not m.optional)


def _yaml_field(field: Field) -> dict:
    if field.dtype == "struct":
        return {"name": field.name, "struct": [_yaml_field(f) for f in field.fields]}
    return {"name": field.name, "dtype": field.dtype}


def feature_list(with_video: bool = True) -> list[dict]:
    """The card's `dataset_info.features` (Hugging Face YAML form), one entry per tar member."""
    out = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    for m in members(with_video):
        if m.kind == "binary":
            out.append({"name": m.suffix, "dtype": "binary"})
        elif m.kind == "npy":
            out.append({"name": m.suffix, "list": {"list": "float32"}})
        else:
            out.append({"name": m.suffix, "struct": [_yaml_field(f) for f in JSON_FIELDS]})
    return out


def hf_features(with_video: bool = True):
    """`datasets.Features` for these shards, e.g.
    `load_dataset("webdataset", data_files=..., features=hf_features())`."""
    from datasets import Features

    return Features._from_yaml_list(feature_list(with_video))


def field_rows(fields: tuple[Field, ...] = JSON_FIELDS, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, type, meaning) for every json field, nested ones included: the card's field table."""
    rows = []
    for f in fields:
        rows.append((prefix + f.name, "object" if f.dtype == "struct" else f.dtype, f.doc))
        if f.fields:
            rows.extend(field_rows(f.fields, prefix + f.name + "."))
    return rows


_TYPES = {"string": (str,), "float64": (int, float), "int64": (int,), "bool": (bool,)}


def check_json(meta: dict, fields: tuple[Field, ...] = JSON_FIELDS, where: str = "json") -> None:
    """Raise ValueError naming the first field that is missing, extra or of the wrong type (null is fine)."""
    names = [f.name for f in fields]
    missing, extra = [n for n in names if n not in meta], sorted(set(meta) - set(names))
    if missing or extra:
        raise ValueError(f"{where}: fields {missing} missing and {extra} not in output/sample_schema.py")
    for f in fields:
        value = meta[f.name]
        if value is None:
            continue
        if f.dtype == "struct":
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{f.name}: expected an object, got {type(value).__name__}")
            check_json(value, f.fields, f"{where}.{f.name}")
        elif not isinstance(value, _TYPES[f.dtype]) or (f.dtype != "bool" and isinstance(value, bool)):
            raise ValueError(f"{where}.{f.name}: expected {f.dtype}, got {type(value).__name__} {value!r}")
