"""The validation report: OUT/report/index.html with PNG plots, static (no JavaScript, no server).

Contents: which quality backend scored (loudly), the funnel from OUT/stats.json, the summary table
in the shape of SpatialV2A's Table 2, per-class counts and hours, distributions (durations, silent
fraction, quality, spatial metrics, azimuth against broadband ILD), and for a few clips the ILD
over time against the visual trajectory with both ears' spectrograms.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from manifests.io import atomic_path, atomic_write_text  # noqa: E402

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

from binauralizer.constants import SAMPLE_RATE  # noqa: E402
TABLE_COLUMNS = ("Dataset", "Quality backend", "CE", "CU", "PQ", "DSP score",
                 "IACC", "ILD (dB)", "ITD (ms)", "ISD (dB)", "IPD (rad)", "Lateral consistency")
# SpatialV2A, Table 2 (ITD's unit and ISD's definition are not given in the paper).
PAPER_ROWS = (
    ("VGGSound (SpatialV2A paper)", "audiobox", "3.71", "5.39", "6.07", "-", "-", "-", "-", "-", "-", "-"),
    ("BinauralVGGSound (SpatialV2A paper)", "audiobox", "3.74", "5.44", "6.09", "-",
     "0.93", "3.08", "1.70", "0.07", "0.32", "-"),
)
METRICS = (("iacc", "IACC"), ("ild_db", "ILD (dB)"), ("itd_ms", "ITD (ms)"), ("isd_db", "ISD (dB)"),
           ("ipd_rad", "IPD (rad)"))
AES = (("aes_ce", "CE"), ("aes_cu", "CU"), ("aes_pq", "PQ"))
# What each Table-2 column measures, and where ours differs from the paper's by definition.
COLUMN_NOTES = (
    ("CE, CU, PQ", "Audiobox Aesthetics scores (1 to 10) of the audio; for the binaural row, of its (L+R)/2 downmix.",
     "Same model when a checkpoint is available; otherwise the columns are n/a and the dsp score stands in."),
    ("IACC", "Interaural cross-correlation: the maximum of the normalised cross-correlation of the two ears within "
             "+-1 ms, per clip, then averaged. 1 = identical ears (no spatial cue).",
     "Same idea; the paper does not give its lag range or frequency band."),
    ("ILD (dB)", "Interaural level difference: |level(left) - level(right)| per 0.5 s segment, averaged per clip.",
     "We average magnitudes, so sources on both sides do not cancel; the paper does not say."),
    ("ITD (ms)", "Interaural time difference: |lag of the cross-correlation peak| per segment, in milliseconds.",
     "The paper reports 1.70 without a unit. A human head (and KEMAR) cannot produce more than about 0.7 to 0.8 ms, "
     "so 1.70 cannot be milliseconds of a physical head; a likely cause is HRIRs at 44.1 kHz applied to 16 kHz "
     "audio (PseudoBinaural's code), which stretches every delay 2.76 times. Our HRIRs are resampled first."),
    ("ISD (dB)", "Our definition: the spread (standard deviation over frequency) of the interaural level spectrum.",
     "The paper does not define ISD; its 0.07 is not comparable with ours."),
    ("IPD (rad)", "Interaural phase difference: mean |phase(left) - phase(right)| over time-frequency bins with energy.",
     "Same idea; the paper does not give its band or weighting."),
    ("Lateral consistency", "Share of clips whose louder ear matches the side of the visual source in at least half "
                            "of their off-centre (|azimuth| > 15 degrees) segments.",
     "Not in the paper: it checks that the audio follows the picture, which the other columns cannot."),
)


@dataclass
class SummaryTable:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "rows": [list(r) for r in self.rows], "notes": self.notes}

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def _values(rows: list[dict], column: str) -> np.ndarray:
    out = []
    for row in rows:
        v = row.get(column)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out.append(float(v))
    return np.asarray(out, dtype=np.float64)


def _mean_cell(rows: list[dict], column: str, digits: int = 2) -> str:
    v = _values(rows, column)
    return f"{v.mean():.{digits}f}" if v.size else "-"


def lateral_share(rows: list[dict], threshold: float = 0.5) -> tuple[float | None, int]:
    """Share of clips (with an off-centre visual source) whose ILD side agrees in >= half the time."""
    v = _values(rows, "lateral_agree")
    if not v.size:
        return None, 0
    return float(np.mean(v >= threshold)), int(v.size)


def quality_backend(rows: list[dict], preflight: dict | None = None) -> str:
    backend = ((preflight or {}).get("quality") or {}).get("backend")
    if backend:
        return str(backend)
    counts = Counter(r.get("quality_backend") for r in rows if r.get("quality_backend"))
    return counts.most_common(1)[0][0] if counts else "none"


def build_table(rows: list[dict], downmix: dict | None = None, preflight: dict | None = None) -> SummaryTable:
    """Paper rows, then this dataset's source mono and binaural rows.

    `downmix`: {"backend": name, "scores": [per-clip dicts with aes_*/dsp_score]} or
    {"backend": name, "skipped": reason}.
    """
    n = len(rows)
    backend = quality_backend(rows, preflight)

    def quality_cells(scored: list[dict], name: str) -> tuple[str, ...]:
        if name == "audiobox":
            return tuple(_mean_cell(scored, c) for c, _ in AES) + ("-",)
        return ("n/a", "n/a", "n/a", _mean_cell(scored, "dsp_score"))

    source = (f"Source mono (this dataset, {n} clips)", backend, *quality_cells(rows, backend),
              "-", "-", "-", "-", "-", "-")
    share, eligible = lateral_share(rows)
    lateral = f"{100 * share:.0f}% of {eligible} clips" if share is not None else "- (no off-centre clips)"
    spatial = tuple(_mean_cell(rows, c, 3 if c in ("iacc", "itd_ms") else 2) for c, _ in METRICS)
    notes = [
        "ILD, ITD, IPD, ISD: per-clip means of magnitudes (definitions in binauralizer/metrics.py); "
        "ITD in milliseconds; ISD is our definition (spectral spread of the interaural level spectrum), "
        "not comparable with the paper's undefined ISD.",
        "Lateral consistency: share of clips whose broadband ILD has the visual azimuth's side in at "
        "least half of their off-centre (|az| > 15 deg) 0.5 s segments.",
    ]
    if backend != "audiobox":
        notes.append(f"Quality was scored by the '{backend}' backend, not Audiobox Aesthetics: CE/CU/PQ "
                     "are not available; the DSP score (1-10) is not comparable with the paper's numbers.")
    if downmix and downmix.get("scores") is not None:
        dm_backend = downmix.get("backend", "?")
        dm_quality = quality_cells(downmix["scores"], dm_backend)
        dm_name = f"Binaural (this dataset, {n} clips; quality of the L+R downmix, {len(downmix['scores'])} scored)"
    else:
        dm_backend = (downmix or {}).get("backend", backend)
        dm_quality = ("-", "-", "-", "-")
        dm_name = f"Binaural (this dataset, {n} clips)"
        notes.append("Quality of the binaural downmix not scored: "
                     + ((downmix or {}).get("skipped") or "no scorer given") + ".")
    binaural = (dm_name, dm_backend, *dm_quality, *spatial, lateral)
    return SummaryTable(TABLE_COLUMNS, [*PAPER_ROWS, source, binaural], notes)


# -- plots -------------------------------------------------------------------------------------------


def _save(fig, path: str) -> str:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return os.path.basename(path)


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _counts_axis(axis) -> None:
    """Clip counts are whole numbers: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _hist(ax, values: np.ndarray, title: str, xlabel: str, bins: int = 30) -> None:
    ax.set_title(title, fontsize=10)
    if values.size:
        ax.hist(values, bins=bins, color="#4472c4")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("clips")
        _counts_axis(ax.yaxis)
    else:
        _no_data(ax, "data")


def plot_funnel(stages: list[dict], path: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    if stages:
        names = [s["stage"] for s in stages]
        x = np.arange(len(names))
        ax.bar(x, [s["kept"] for s in stages], color="#4472c4", label="kept")
        ax.bar(x, [s["dropped"] for s in stages], bottom=[s["kept"] for s in stages], color="#ed7d31",
               label="dropped")
        ax.bar(x, [s["failed"] for s in stages], bottom=[s["kept"] + s["dropped"] for s in stages],
               color="#c00000", label="failed")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("clips")
        _counts_axis(ax.yaxis)
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "OUT/stats.json")
    ax.set_title("Funnel: clips in, kept, dropped and failed per stage", fontsize=10)
    return _save(fig, path)


def plot_classes(classes: list[tuple[str, int, float]], path: str, top: int = 30) -> str:
    shown = classes[:top]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.3 * max(4, len(shown)) + 1), sharey=True)
    if shown:
        y = np.arange(len(shown))[::-1]
        axes[0].barh(y, [c for _, c, _ in shown], color="#4472c4")
        axes[0].set_yticks(y, [lbl[:40] for lbl, _, _ in shown], fontsize=8)
        axes[0].set_xlabel("clips")
        _counts_axis(axes[0].xaxis)
        axes[1].barh(y, [h for _, _, h in shown], color="#70ad47")
        axes[1].set_xlabel("hours")
    else:
        _no_data(axes[0], "clips")
    axes[0].set_title(f"Per class (top {min(top, len(classes))} of {len(classes)})", fontsize=10)
    return _save(fig, path)


def plot_distributions(rows: list[dict], plot_dir: str) -> dict[str, str]:
    """durations, silent fraction, quality, spatial metrics, azimuth: one PNG each."""
    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    _hist(axes[0], _values(rows, "window_samples") / SAMPLE_RATE, "Clip (window) duration", "seconds")
    _hist(axes[1], _values(rows, "duration_s"), "Source video duration", "seconds")
    out["durations"] = _save(fig, os.path.join(plot_dir, "durations.png"))

    fig, ax = plt.subplots(figsize=(5, 3))
    _hist(ax, _values(rows, "silent_fraction"), "Silent fraction", "fraction of the clip")
    out["silence"] = _save(fig, os.path.join(plot_dir, "silence.png"))

    columns = [(c, n) for c, n in (("aes_ce", "CE"), ("aes_cu", "CU"), ("aes_pc", "PC"), ("aes_pq", "PQ"),
                                   ("dsp_score", "DSP score"), ("dsp_snr_db", "DSP SNR (dB)"))]
    columns = [(c, n) for c, n in columns if _values(rows, c).size] or [("aes_pq", "PQ")]
    fig, axes = plt.subplots(1, len(columns), figsize=(3 * len(columns), 3), squeeze=False)
    for ax, (c, n) in zip(axes[0], columns):
        _hist(ax, _values(rows, c), f"Quality: {n}", n)
    out["quality"] = _save(fig, os.path.join(plot_dir, "quality.png"))

    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 3))
    for ax, (c, n) in zip(axes, METRICS):
        _hist(ax, _values(rows, c), n, n)
    out["spatial"] = _save(fig, os.path.join(plot_dir, "spatial.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    _hist(axes[0], _values(rows, "az_mean_deg"), "Visual azimuth (mean per clip)", "degrees (+ = left)")
    pairs = [(r.get("az_mean_deg"), r.get("ild_broadband_db")) for r in rows]
    pairs = np.array([p for p in pairs if all(isinstance(v, (int, float)) and np.isfinite(v) for v in p)])
    axes[1].set_title("Broadband ILD against visual azimuth", fontsize=10)
    if pairs.size:
        axes[1].scatter(pairs[:, 0], pairs[:, 1], s=10, color="#4472c4")
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].axvline(0, color="grey", lw=0.5)
        axes[1].set_xlabel("azimuth (deg, + = left)")
        axes[1].set_ylabel("ILD (dB, + = left louder)")
    else:
        _no_data(axes[1], "localised clips")
    out["azimuth"] = _save(fig, os.path.join(plot_dir, "azimuth.png"))
    return out


def plot_filters(views: list[dict], path: str) -> str:
    """Per filter: kept and dropped clips stacked, the threshold drawn where the stage has one."""
    fig, axes = plt.subplots(1, max(1, len(views)), figsize=(3.6 * max(1, len(views)), 3), squeeze=False)
    for ax, view in zip(axes[0], views):
        values = [v for v in (view["kept"], view["dropped"])]
        both = np.concatenate([np.asarray(v, float) for v in values])
        bins = np.histogram_bin_edges(both, bins=20) if both.size and np.ptp(both) > 0 else 10
        ax.hist(values, bins=bins, stacked=True, color=["#4472c4", "#ed7d31"],
                label=[f"kept ({len(view['kept'])})", f"dropped ({len(view['dropped'])})"])
        if view.get("threshold") is not None:
            ax.axvline(view["threshold"], color="#c00000", lw=1.5, ls="--", label=f"threshold {view['threshold']:g}")
        ax.set_title(f"{view['stage']}: {view['label']}", fontsize=10)
        ax.set_xlabel(view["label"])
        ax.set_ylabel("clips")
        _counts_axis(ax.yaxis)
        ax.legend(fontsize=7)
    if not views:
        _no_data(axes[0][0], "filter stage in this run")
    return _save(fig, path)


def plot_loss(history: list[dict], path: str) -> str:
    """The U-Net's training loss per step, with a 10-step moving average."""
    fig, ax = plt.subplots(figsize=(7, 3))
    if history:
        steps = np.array([h["step"] for h in history])
        total = np.array([h["total"] for h in history], float)
        ax.plot(steps, total, color="#4472c4", lw=0.7, alpha=0.5, label="loss per step")
        k = min(len(total), 10)
        ax.plot(steps[k - 1:], np.convolve(total, np.ones(k) / k, mode="valid"), color="#4472c4", lw=2,
                label=f"{k}-step mean")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("L1 loss (L-R spectrogram)")
        _counts_axis(ax.xaxis)
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "U-Net training in this run")
    ax.set_title("U-Net training loss", fontsize=10)
    return _save(fig, path)


def plot_clip(trace: dict, path: str) -> str:
    """ILD over time against the visual azimuth, and the left/right spectrograms, of one clip."""
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    ax = axes[0]
    ild_line, = ax.plot(trace["times"], trace["ild_db"], "o-", color="#4472c4", ms=3, label="ILD (0.5 s segments)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("ILD (dB, + = left louder)")
    handles = [ild_line]
    if len(trace.get("traj_t", [])):
        twin = ax.twinx()
        az_line, = twin.plot(trace["traj_t"], trace["traj_az"], color="#c00000", lw=1.2,
                             label="picture's azimuth (trajectory)")
        handles.append(az_line)
        twin.set_ylabel("azimuth (deg, + = left)", color="#c00000")
        lim = max(15.0, float(np.nanmax(np.abs(trace["traj_az"]))) if np.isfinite(trace["traj_az"]).any() else 60)
        twin.set_ylim(-lim * 1.1, lim * 1.1)
    ax.legend(handles=handles, loc="upper right", fontsize=7)
    agree = trace.get("lateral_agree")
    ax.set_title(f"{trace['clip_id']} ({trace.get('label') or 'no label'}): lateral agreement "
                 f"{'-' if agree is None else f'{agree:.2f}'}", fontsize=10)
    extent = [0, trace["duration_s"], 0, SAMPLE_RATE / 2000]
    for ax, name, spec in ((axes[1], "left", trace["spec_l_db"]), (axes[2], "right", trace["spec_r_db"])):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=float(np.max(spec)) - 80, vmax=float(np.max(spec)))
        ax.set_ylabel(f"{name} ear (kHz)")
        fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    axes[2].set_xlabel("time (s)")
    return _save(fig, path)


# -- page -------------------------------------------------------------------------------------------


def _total(counts) -> int:
    """The runner's stats give {reason: n}; older or hand-made files may give a plain number."""
    return sum(int(v) for v in counts.values()) if isinstance(counts, dict) else int(counts or 0)


def funnel_rows(stats: dict | None) -> list[dict]:
    """OUT/stats.json's stages as rows; anything missing or malformed counts as 0."""
    stages = (stats or {}).get("stages") or {}
    rows = []
    if not isinstance(stages, dict):
        return rows
    for name, s in stages.items():
        s = s if isinstance(s, dict) else {}
        dropped, failed = s.get("dropped") or {}, s.get("failed") or {}
        rows.append({"stage": str(name), "in": int(s.get("in") or 0), "kept": int(s.get("kept") or 0),
                     "dropped": _total(dropped), "failed": _total(failed),
                     "reasons": {**(dropped if isinstance(dropped, dict) else {}),
                                 **({f"failed: {k}": v for k, v in failed.items()} if isinstance(failed, dict) else {})},
                     "wall_s": s.get("wall_s")})
    return rows


def split_rows(rows: list[dict], sizes: dict | None = None) -> list[tuple[str, int, str, int]]:
    """(split, clips, hours, shards) per split: shard counts from shards/sizes.json when it exists."""
    clips: Counter = Counter()
    hours: Counter = Counter()
    for row in rows:
        split = str(row.get("split") or "train")
        clips[split] += 1
        samples = row.get("window_samples")
        hours[split] += (float(samples) if isinstance(samples, (int, float)) else 0.0) / SAMPLE_RATE / 3600
    shards = {k: int(v.get("shards") or 0) for k, v in (((sizes or {}).get("splits")) or {}).items()}
    return [(s, clips[s], f"{hours[s]:.2f}", shards.get(s, 0)) for s in sorted(set(clips) | set(shards))]


def class_rows(rows: list[dict]) -> list[tuple[str, int, float]]:
    counts: Counter = Counter()
    hours: Counter = Counter()
    for row in rows:
        label = str(row.get("label") or "(no label)")
        counts[label] += 1
        samples = row.get("window_samples")
        hours[label] += (float(samples) if isinstance(samples, (int, float)) else 0.0) / SAMPLE_RATE / 3600
    return sorted(((lbl, counts[lbl], hours[lbl]) for lbl in counts), key=lambda t: (-t[1], t[0]))


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #bbb;padding:3px 7px}
th{background:#eee}.warn{background:#ffd7d7;border:2px solid #c00000;padding:0.6em}
.ok{background:#e2f0d9;border:1px solid #70ad47;padding:0.6em}img{max-width:100%}
pre{background:#f4f4f4;padding:0.6em;font-size:0.8em;white-space:pre-wrap;overflow-wrap:anywhere}
.wide{overflow-x:auto;max-width:100%}.clip{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;
border-top:1px solid #ddd;padding-top:0.6em}.clip img{max-width:100%;flex:1 1 480px;min-width:0}
.players{flex:0 1 300px;min-width:0}.players audio{width:100%}.meta{color:#555;font-size:0.9em}"""


def _template(name: str):
    """A Jinja2 template from output/templates (autoescaped: every value is text, never markup)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name)


def write_report(
    out_dir: str,
    rows: list[dict],
    table: SummaryTable,
    *,
    stats: dict | None = None,
    config: dict | None = None,
    preflight: dict | None = None,
    traces: list[dict] | None = None,
    title: str = "Binaural dataset",
    filters: list[dict] | None = None,
    loss: list[dict] | None = None,
    date: str = "",
    sizes: dict | None = None,
) -> str:
    """Render OUT/report/index.html (templates/report.html.j2, + plots/*.png, table.json); returns its path."""
    report_dir = os.path.join(out_dir, "report")
    plot_dir = os.path.join(report_dir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    funnel = funnel_rows(stats)
    classes = class_rows(rows)
    images = {"funnel": plot_funnel(funnel, os.path.join(plot_dir, "funnel.png")),
              "classes": plot_classes(classes, os.path.join(plot_dir, "classes.png"))}
    images.update(plot_distributions(rows, plot_dir))
    images["filters"] = plot_filters(filters or [], os.path.join(plot_dir, "filters.png"))
    images["loss"] = plot_loss(loss or [], os.path.join(plot_dir, "loss_curve.png"))
    clips = [{"image": plot_clip(t, os.path.join(plot_dir, f"clip_{i}.png")), "clip_id": t["clip_id"],
              "label": t.get("label") or "", "audio": t.get("audio") or {}} for i, t in enumerate(traces or [])]
    from output.about import TOOL, tool_version

    page = _template("report.html.j2").render(
        tool=TOOL, version=tool_version(), date=date or "unknown date", splits=split_rows(rows, sizes),
        column_notes=COLUMN_NOTES, clips=clips,
        has_shards=os.path.isdir(os.path.join(out_dir, "shards")),
        title=title, css=CSS, backend=quality_backend(rows, preflight),
        backend_why=str(((preflight or {}).get("quality") or {}).get("why") or ""),
        n_clips=len(rows), hours=sum(h for _, _, h in classes), classes=classes,
        summary=table, images=images,
        funnel=[(f["stage"], f["in"], f["kept"], f["dropped"], f["failed"],
                 ", ".join(f"{k}: {v}" for k, v in sorted(f["reasons"].items())) or "-",
                 "-" if f["wall_s"] is None else f"{float(f['wall_s']):.1f}") for f in funnel],
        class_table=[(c, n, f"{h:.3f}") for c, n, h in classes],
        preflight_json=json.dumps(preflight or {}, indent=1, sort_keys=True, default=str),
        config_json=json.dumps(config or {}, indent=1, sort_keys=True, default=str),
    )
    path = os.path.join(report_dir, "index.html")
    atomic_write_text(path, page)
    atomic_write_text(os.path.join(report_dir, "table.json"), json.dumps(table.to_dict(), indent=1))
    return path
