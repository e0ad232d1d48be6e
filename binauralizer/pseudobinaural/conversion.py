"""Mono clip -> binaural clip, three ways: the trained U-Net, SH rendering, or plain mono.

U-Net conversion slides 0.63 s windows with a 0.1 s hop over the clip (the last window is
aligned to the clip's end), so every sample is covered by several windows whose outputs are
averaged. Each window is RMS-normalised before the network and rescaled after with ONE scalar
shared by both channels: level differences between the ears survive, the network always sees the
level it was trained on. A model conditioned on heatmaps gets the localiser's heatmap of the same
frame (a clip without one gets a flat map: no evidence). Windows of many clips are batched together, which is what makes a GPU
(or a CPU core) busy. L = (x + d) / 2 and R = (x - d) / 2 with d the predicted difference, so
L + R is exactly the input. The convert stage then applies the project's one level convention to
every mode (binauralizer.level: per-ear RMS = the mono's RMS, one gain for both ears).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from binauralizer.pseudobinaural import unet as unet_mod

WINDOW = unet_mod.WINDOW_SAMPLES  # 10080 samples = 0.63 s
HOP = 1600  # 0.1 s
TARGET_RMS = 0.1
MODES = ("unet", "direct", "sh", "mono")


def window_starts(n: int, window: int = WINDOW, hop: int = HOP) -> list[int]:
    """Starts of the sliding windows covering n samples; the last one ends at n."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def frame_at(frames: np.ndarray, fps: float, t_s: float) -> np.ndarray:
    """The frame nearest time t (frames sampled from t = 0 at fps)."""
    return frames[int(np.clip(round(t_s * fps), 0, len(frames) - 1))]


@dataclass
class ClipInput:
    audio: np.ndarray  # (N,) float32 mono, 16 kHz
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8 (unet mode)
    fps: float = 8.0
    trajectory: np.ndarray | None = None  # (T, 3) az_deg, el_deg, dist_m at fps (sh mode)
    heatmap: np.ndarray | None = None  # (T, h, w) the localiser's heatmaps at fps (unet models that use them)


class UNetConverter:
    """Sliding-window inference with windows batched across clips."""

    def __init__(self, model: unet_mod.AudioVisualUNet, device: str | torch.device = "cpu", batch_size: int = 64):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.frame_size = tuple(model.config.frame_size)
        self.heat_grid = tuple(model.config.heatmap_grid) if model.config.heatmap else None

    @classmethod
    def from_file(cls, path: str, device: str | torch.device = "cpu", batch_size: int = 64) -> "UNetConverter":
        return cls(unet_mod.load_model(path, device), device, batch_size)

    def _frame_tensor(self, frame: np.ndarray) -> torch.Tensor:
        """Resize once per window to the model's frame size (keeps batches small in memory)."""
        x = torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=self.frame_size, mode="bilinear", align_corners=False,
                                            antialias=True)
        return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)

    def _heat_tensor(self, clip: ClipInput, t_s: float) -> torch.Tensor:
        """The heatmap of the window's frame on the model's grid (flat without one)."""
        if clip.heatmap is None or len(clip.heatmap) == 0:
            return torch.ones(self.heat_grid)
        heat = torch.from_numpy(np.asarray(frame_at(clip.heatmap, clip.fps, t_s), np.float32))
        return unet_mod.pool_heat(heat[None], self.heat_grid)[0]

    @torch.no_grad()
    def predict_windows(self, windows: np.ndarray, frames: torch.Tensor, heat: torch.Tensor | None = None) -> np.ndarray:
        """(B, 10080) normalised windows + (B, h, w, 3) uint8 frames (+ (B, gh, gw) heatmaps) -> (B, 10080) L-R."""
        x = torch.from_numpy(windows).to(self.device)
        mix = unet_mod.complex_to_channels(unet_mod.stft(x))
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            out = self.model(mix, frames.to(self.device), None if heat is None else heat.to(self.device))
        diff = unet_mod.channels_to_complex(out["diff"].float())
        return unet_mod.istft(diff, WINDOW).cpu().numpy()

    def convert(self, clips: list[ClipInput]) -> list[np.ndarray]:
        """Binaural (2, N) float32 per clip, row 0 = left."""
        jobs = []  # (clip index, start)
        for ci, clip in enumerate(clips):
            if clip.frames is None or len(clip.frames) == 0:
                raise ValueError("unet conversion needs the clip's frames")
            jobs += [(ci, s) for s in window_starts(len(clip.audio))]
        acc = [np.zeros(max(len(c.audio), WINDOW), np.float64) for c in clips]
        count = [np.zeros(max(len(c.audio), WINDOW), np.float64) for c in clips]
        for b in range(0, len(jobs), self.batch_size):
            chunk = jobs[b : b + self.batch_size]
            wins, gains, frames, heats = [], [], [], []
            for ci, s in chunk:
                clip = clips[ci]
                w = np.zeros(WINDOW, np.float32)
                seg = clip.audio[s : s + WINDOW]
                w[: len(seg)] = seg
                gain = TARGET_RMS / max(float(np.sqrt(np.mean(w.astype(np.float64) ** 2))), 1e-6)
                wins.append(w * np.float32(gain))
                gains.append(gain)
                t_s = (s + WINDOW / 2) / unet_mod.SAMPLE_RATE
                frames.append(self._frame_tensor(frame_at(clip.frames, clip.fps, t_s)))
                if self.heat_grid:
                    heats.append(self._heat_tensor(clip, t_s))
            # Always a full batch (zero-padded): the same window then gives the same bytes whatever
            # clips it is batched with (kernels pick their blocking from the batch shape).
            pad = self.batch_size - len(chunk)
            wins += [np.zeros(WINDOW, np.float32)] * pad
            frames += [frames[-1]] * pad
            heats += heats[-1:] * pad
            heat = torch.stack(heats) if heats else None
            diffs = self.predict_windows(np.stack(wins), torch.stack(frames), heat)[: len(chunk)]
            for (ci, s), d, g in zip(chunk, diffs, gains):
                acc[ci][s : s + WINDOW] += d / g
                count[ci][s : s + WINDOW] += 1.0
        out = []
        for clip, a, c in zip(clips, acc, count):
            n = len(clip.audio)
            diff = a[:n] / np.maximum(c[:n], 1.0)
            x = clip.audio.astype(np.float64)
            out.append(np.stack([(x + diff) / 2, (x - diff) / 2]).astype(np.float32))
        return out


def convert_mono(audio: np.ndarray) -> np.ndarray:
    """The baseline: both ears the same, L = R = x."""
    return np.repeat(np.asarray(audio, np.float32)[None], 2, axis=0)


def convert_direct(audio: np.ndarray, trajectory: np.ndarray, fps: float, hrirs, **render_kw) -> np.ndarray:
    """`direct` mode: the mono clip along its localised trajectory through interpolated measured HRIRs
    (moving.render_trajectory(mode="direct")): the head's own ITD and ILD, 40 ms crossfades."""
    return convert_sh(audio, trajectory, fps, hrirs, mode="direct", **render_kw)


def convert_sh(audio: np.ndarray, trajectory: np.ndarray, fps: float, hrirs, **render_kw) -> np.ndarray:
    """Render the mono clip along its localised trajectory (T, 3: az_deg, el_deg, dist_m); SH by
    default, any render_trajectory mode through `mode=`."""
    from binauralizer import moving

    traj = np.asarray(trajectory, np.float64)
    if traj.ndim != 2 or traj.shape[1] != 3 or len(traj) == 0:
        raise ValueError(f"trajectory must be (T, 3) az/el/dist, got shape {traj.shape}")
    times = np.arange(len(traj)) / float(fps)
    x = np.asarray(audio, np.float64)
    out = np.asarray(moving.render_trajectory(x, times, traj[:, 0], traj[:, 1], traj[:, 2], hrirs, **render_kw),
                     np.float64)[:, : len(x)]
    if out.shape[1] < len(x):
        out = np.pad(out, ((0, 0), (0, len(x) - out.shape[1])))
    return out.astype(np.float32)  # the caller sets the level (binauralizer.level.match_level)
