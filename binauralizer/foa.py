"""First-order Ambisonics path (ViSAudio): encode sources, rotate by a camera trajectory, decode binaurally.

FOA format: ACN channel order [W, Y, Z, X], SN3D normalisation (AmbiX). A plane wave s from
(az, el) gives W = s, Y = s cos(el) sin(az), Z = s sin(el), X = s cos(el) cos(az).

Camera convention (angles in degrees; the camera is the listener's head):
  yaw   > 0 turns the camera LEFT (towards positive azimuth),
  pitch > 0 tilts it UP,
  roll  > 0 lifts its left side (right-handed about the viewing axis).
Orientation C = Rz(yaw) Ry(-pitch) Rx(roll) with x front, y left, z up (yaw first, then pitch and
roll about the camera's own axes). A scene direction v is seen by the camera at C^T v, so the
FOA's [X, Y, Z] is multiplied by C^T. For a yaw psi this is ViSAudio's formula
    W' = W,  X' = cos(psi) X + sin(psi) Y,  Y' = -sin(psi) X + cos(psi) Y:
a camera turning left by psi moves every source psi to the RIGHT (az -> az - psi). Rotating the
scene itself by +psi (az -> az + psi) is a camera yaw of -psi. spaudiopy.sph.sh_rotation_matrix
uses the same yaw sign; its pitch has the opposite sign and it composes the axes in another
order, so `sh_rotation` (any order) builds C^T from single-axis spaudiopy matrices.

Decoding goes through sh_render's order-1 decoders, so a zero rotation equals render_static in
`sh` mode. The default (lsq on the PseudoBinaural 8-speaker horizontal ring) cannot reproduce Z:
when camera pitch or roll should move sources up and down, pass decoder="magls" (ear filters
fitted to every measured direction; also the most accurate at first order).
"""

from __future__ import annotations

import numpy as np

from binauralizer import sh_render
from binauralizer.hrir import HRIRSet, load_hrirs
from binauralizer.constants import SAMPLE_RATE

ACN_SN3D_TO_XYZ = (3, 1, 2)  # channels holding x, y, z


def encode_foa(mono, az_deg, el_deg) -> np.ndarray:
    """(4, N) AmbiX FOA of one source; az/el scalars or per-sample arrays (N,)."""
    x = np.asarray(mono, np.float32)
    if x.ndim != 1:
        raise ValueError(f"encode_foa takes one mono signal (N,), got shape {x.shape}")
    az, el = np.radians(np.asarray(az_deg, float)), np.radians(np.asarray(el_deg, float))
    w, y, z, x_ = np.ones_like(az), np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)
    gains = np.stack(np.broadcast_arrays(w, y, z, x_))
    return (gains.reshape(4, -1) * x[None, :]).astype(np.float32)


def camera_orientation(yaw_deg, pitch_deg=0.0, roll_deg=0.0) -> np.ndarray:
    """C = Rz(yaw) Ry(-pitch) Rx(roll): (..., 3, 3), columns = the camera's front, left, up axes."""
    yaw, pitch, roll = np.broadcast_arrays(*(np.radians(np.asarray(a, float)) for a in (yaw_deg, pitch_deg, roll_deg)))
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(-pitch), np.sin(-pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    rz = np.stack([np.stack([cy, -sy, zero], -1), np.stack([sy, cy, zero], -1), np.stack([zero, zero, one], -1)], -2)
    ry = np.stack([np.stack([cp, zero, sp], -1), np.stack([zero, one, zero], -1), np.stack([-sp, zero, cp], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cr, -sr], -1), np.stack([zero, sr, cr], -1)], -2)
    return np.einsum("...ij,...jk,...kl->...il", rz, ry, rx)


def foa_rotation(yaw_deg, pitch_deg=0.0, roll_deg=0.0) -> np.ndarray:
    """(..., 4, 4) matrix acting on ACN FOA (SN3D or orthonormal alike): W kept, [X, Y, Z] by C^T."""
    ct = np.swapaxes(camera_orientation(yaw_deg, pitch_deg, roll_deg), -1, -2)
    out = np.zeros((*ct.shape[:-2], 4, 4))
    out[..., 0, 0] = 1.0
    idx = np.array(ACN_SN3D_TO_XYZ)
    out[..., idx[:, None], idx[None, :]] = ct
    return out


def sh_rotation(order: int, yaw_deg, pitch_deg=0.0, roll_deg=0.0) -> np.ndarray:
    """(n_sh, n_sh) rotation of real ACN SH signals of any order for the camera orientation above.

    Rotations act within each degree, so the matrix is the same for SN3D and orthonormal signals.
    spaudiopy's single-axis matrices M(yaw) = Rz(yaw)^T, M(pitch p) = Ry(p)^T, M(roll) = Rx(roll)^T
    compose to C^T = Rx(roll)^T Ry(-pitch)^T Rz(yaw)^T.
    """
    rot = sh_render._spaudiopy().sph.sh_rotation_matrix
    yaw, pitch, roll = (float(np.radians(a)) for a in (yaw_deg, pitch_deg, roll_deg))
    return rot(order, 0.0, 0.0, roll) @ rot(order, 0.0, -pitch, 0.0) @ rot(order, yaw, 0.0, 0.0)


def rotate_foa(foa: np.ndarray, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, times_s=None, fs: int = SAMPLE_RATE,
               update_s: float = 0.01) -> np.ndarray:
    """Rotate (4, N) FOA by the camera orientation: fixed angles, or a trajectory sampled at `times_s`.

    With times_s the angles are interpolated linearly (yaw unwrapped, ends held) to an orientation
    every `update_s`, and the rotation matrix is crossfaded linearly between consecutive
    orientations (= a linear crossfade of the two rotated renderings, as for moving sources): smooth,
    no zipper noise, and a constant trajectory equals the fixed rotation exactly.
    """
    foa = np.asarray(foa, np.float32)
    if foa.ndim != 2 or foa.shape[0] != 4:
        raise ValueError(f"expected FOA of shape (4, N), got {foa.shape}")
    if times_s is None:
        return (foa_rotation(yaw_deg, pitch_deg, roll_deg).astype(np.float32) @ foa).astype(np.float32)
    t = np.atleast_1d(np.asarray(times_s, float))
    angles = [np.broadcast_to(np.atleast_1d(np.asarray(a, float)), t.shape) for a in (yaw_deg, pitch_deg, roll_deg)]
    if not all(np.all(np.isfinite(a)) for a in [t, *angles]) or np.any(np.diff(t) <= 0):
        raise ValueError("camera trajectory needs finite angles and strictly increasing times")
    angles[0] = np.degrees(np.unwrap(np.radians(angles[0])))
    n = foa.shape[1]
    hop = max(1, int(round(update_s * fs)))
    k = max(n - 1, 0) // hop + 2  # orientations at 0, hop, ..., past the last sample
    tk = np.arange(k) * hop / fs
    mats = foa_rotation(*(np.interp(tk, t, a) for a in angles)).astype(np.float32)  # (K, 4, 4)
    ramp = np.arange(hop, dtype=np.float32) / hop
    seg = np.zeros((4, (k - 1) * hop), np.float32)
    seg[:, :n] = foa
    seg = np.ascontiguousarray(seg.reshape(4, k - 1, hop).transpose(1, 0, 2))  # (K-1, 4, hop)
    start, step = mats[:-1], np.diff(mats, axis=0)  # (K-1, 4, 4)
    out = start @ seg + (step @ seg) * ramp
    return np.ascontiguousarray(out.transpose(1, 0, 2).reshape(4, -1)[:, :n])


def decode_foa(foa: np.ndarray, hrirs: HRIRSet | None = None, decoder: str = "lsq", layout: str = "auto") -> np.ndarray:
    """Binaural (2, N) from AmbiX FOA (4, N) through sh_render's virtual loudspeakers."""
    psi = np.asarray(foa, np.float32) * sh_render.sn3d_to_orthonormal(1).astype(np.float32)[:, None]
    return sh_render.decode(psi, hrirs or load_hrirs(), 1, decoder, layout)


def render_rotated(sources, az_deg, el_deg, hrirs: HRIRSet | None = None, times_s=None, yaw_deg=0.0, pitch_deg=0.0,
                   roll_deg=0.0, decoder: str = "lsq", layout: str = "auto", update_s: float = 0.01) -> np.ndarray:
    """Static sources (list of (N,) mono at az/el) -> FOA -> camera rotation -> binaural (2, N)."""
    hrirs = hrirs or load_hrirs()
    monos = [np.asarray(m, np.float32) for m in sources]
    if not monos:
        raise ValueError("render_rotated needs at least one source")
    n = max(len(m) for m in monos)
    foa = np.zeros((4, n), np.float32)
    for mono, az, el in zip(monos, np.atleast_1d(az_deg), np.atleast_1d(el_deg)):
        foa[:, : len(mono)] += encode_foa(mono, az, el)
    foa = rotate_foa(foa, yaw_deg, pitch_deg, roll_deg, times_s, hrirs.fs, update_s)
    return decode_foa(foa, hrirs, decoder, layout)
