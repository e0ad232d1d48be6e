"""silence: drop clips that are mostly silent (SpatialV2A §3.1: more than 80 % silent).

A 30 ms frame counts as active when WebRTC's VAD calls it voiced *and* its level clears an energy
gate: the VAD alone calls steady noise voiced (white noise at -30 dBFS: every frame, modes 0 and 1),
and a level gate alone cannot tell a hum from content. The gate is absolute (-50 dBFS by default)
and optionally relative to the clip's loud frames (`relative_gate_db`). The measurement (silent fraction) is stored apart from the decision,
so a new threshold re-decides without decoding or running the VAD again.
"""

from __future__ import annotations


import numpy as np

from stages.base import settings, DROPPED, KEPT, ConfigError, Params, Stage
from stages.clipdata import load_audio


@settings
class SilenceParams(Params):
    max_silent_fraction: float = 0.8
    aggressiveness: int = 0  # WebRTC VAD mode 0..3; 0 keeps non-speech sounds (engines, music) active
    frame_ms: int = 30
    energy_gate_dbfs: float = -50.0
    relative_gate_db: float = 0.0  # >0: frames this far below the clip's 95th-percentile level are silent

    def validate(self) -> None:
        if not 0 <= self.max_silent_fraction <= 1:
            raise ConfigError("stages.silence.max_silent_fraction: must be in [0, 1]")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"stages.silence.aggressiveness: must be 0, 1, 2 or 3, got {self.aggressiveness}")
        if self.frame_ms not in (10, 20, 30):
            raise ConfigError(f"stages.silence.frame_ms: WebRTC VAD takes 10, 20 or 30 ms frames, got {self.frame_ms}")


def frame_activity(audio: np.ndarray, sample_rate: int, frame_ms: int, aggressiveness: int, gate_dbfs: float,
                   relative_gate_db: float = 0.0):
    """Per-frame (vad, energy) booleans for 16-bit PCM frames of `frame_ms`.

    The energy gate is absolute (dBFS) and, when `relative_gate_db` > 0, also relative to the clip's
    own loud frames, so a steady noise floor under a louder event counts as silence.
    """
    import webrtcvad

    n = sample_rate * frame_ms // 1000
    count = audio.size // n
    frames = np.clip(audio[: count * n], -1.0, 1.0).reshape(count, n)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    energy = level > gate_dbfs
    if relative_gate_db > 0 and count:
        energy &= level > np.percentile(level, 95) - relative_gate_db
    pcm = (frames * 32767.0).astype("<i2")
    vad = webrtcvad.Vad(aggressiveness)
    voiced = np.array([vad.is_speech(pcm[i].tobytes(), sample_rate) for i in range(count)], dtype=bool)
    return voiced, energy


class SilenceStage(Stage):
    name = "silence"
    version = "1"
    Params = SilenceParams
    decision_keys = ("max_silent_fraction",)
    data_deps = ("ingest", "duration")
    reads = ("source_id", "window_start", "window_samples")
    writes = ("silent_fraction", "vad_speech_fraction", "energy_active_fraction")
    kind = "task"

    def measure(self, rows: list[dict]) -> list[dict]:
        p = self.params
        out = []
        for row in rows:
            audio = load_audio(self.ctx, row)
            if not np.all(np.isfinite(audio)):
                out.append({"_error": "audio has non-finite samples"})
                continue
            voiced, energy = frame_activity(audio, self.ctx.sample_rate, p.frame_ms, p.aggressiveness,
                                            p.energy_gate_dbfs, p.relative_gate_db)
            if voiced.size == 0:
                out.append({"_error": f"audio shorter than one {p.frame_ms} ms frame"})
                continue
            active = voiced & energy
            out.append({
                "silent_fraction": round(float(1.0 - active.mean()), 6),
                "vad_speech_fraction": round(float(voiced.mean()), 6),
                "energy_active_fraction": round(float(energy.mean()), 6),
            })
        return out

    def decide(self, row: dict) -> tuple[str, str]:
        silent = row["silent_fraction"]
        if silent > self.params.max_silent_fraction:
            return DROPPED, f"mostly silent: {silent:.0%} silent > {self.params.max_silent_fraction:.0%}"
        return KEPT, ""
