"""FOA path: encoding, the camera rotation convention (matrix and binaural), trajectories, higher orders."""

from __future__ import annotations

import numpy as np
import pytest

from binauralizer import foa, sh_render
from binauralizer.hrir import load_hrirs
from binauralizer.sh_render import render_static

FS = 16000


def plane_wave_sn3d(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.array([1.0, np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(8).standard_normal(FS).astype(np.float32)


def test_encoding_is_acn_sn3d():
    x = np.ones(3, np.float32)
    np.testing.assert_allclose(foa.encode_foa(x, 90.0, 0.0)[:, 0], [1, 1, 0, 0], atol=1e-7)  # W Y Z X
    np.testing.assert_allclose(foa.encode_foa(x, 0.0, 90.0)[:, 0], [1, 0, 1, 0], atol=1e-7)
    # SN3D -> orthonormal factors turn it into spaudiopy's (orthonormal ACN) SH of the same direction
    np.testing.assert_allclose(plane_wave_sn3d(30, 20) * sh_render.sn3d_to_orthonormal(1),
                               sh_render.sh_matrix(1, 30.0, 20.0), atol=1e-12)


@pytest.mark.parametrize("psi", [-120.0, -30.0, 15.0, 90.0])
def test_yaw_matrix_is_visaudios_formula(psi):
    r = foa.foa_rotation(psi)
    c, s = np.cos(np.radians(psi)), np.sin(np.radians(psi))
    w, y, z, x = 0, 1, 2, 3
    assert r[w, w] == 1 and r[z, z] == pytest.approx(1)
    assert (r[x, x], r[x, y], r[y, x], r[y, y]) == pytest.approx((c, s, -s, c))  # X' = cX + sY, Y' = -sX + cY
    # camera turning left by psi: a source at az appears at az - psi
    np.testing.assert_allclose(r @ plane_wave_sn3d(40.0, 10.0), plane_wave_sn3d(40.0 - psi, 10.0), atol=1e-12)
    # the scene rotated by +psi (camera -psi): the source appears at az + psi
    np.testing.assert_allclose(foa.foa_rotation(-psi) @ plane_wave_sn3d(40.0, 10.0),
                               plane_wave_sn3d(40.0 + psi, 10.0), atol=1e-12)


def test_pitch_and_roll_conventions():
    # camera looks up 20 degrees: what was straight ahead is now 20 degrees below the view axis
    np.testing.assert_allclose(foa.foa_rotation(0, 20) @ plane_wave_sn3d(0, 0), plane_wave_sn3d(0, -20), atol=1e-12)
    # camera's left side lifted by 30 degrees: a source on the left appears 30 degrees below the left axis
    rolled = foa.foa_rotation(0, 0, 30) @ plane_wave_sn3d(90, 0)
    np.testing.assert_allclose(rolled, plane_wave_sn3d(90, -30), atol=1e-12)


def test_rotation_matches_spaudiopy_at_first_and_higher_orders():
    angles = (30.0, 20.0, 10.0)
    np.testing.assert_allclose(foa.sh_rotation(1, *angles), foa.foa_rotation(*angles), atol=1e-12)
    # order 3: the rotated SH of a direction are the SH of the direction the camera sees
    c = foa.camera_orientation(*angles)
    for az, el in [(50.0, 17.0), (-120.0, -35.0)]:
        seen = c.T @ np.array([np.cos(np.radians(el)) * np.cos(np.radians(az)),
                               np.cos(np.radians(el)) * np.sin(np.radians(az)), np.sin(np.radians(el))])
        az2, el2 = np.degrees(np.arctan2(seen[1], seen[0])), np.degrees(np.arcsin(seen[2]))
        np.testing.assert_allclose(foa.sh_rotation(3, *angles) @ sh_render.sh_matrix(3, az, el),
                                   sh_render.sh_matrix(3, az2, el2), atol=1e-12)


@pytest.mark.parametrize("psi", [-60.0, 25.0, 100.0])
def test_rotated_binaural_equals_rendering_at_the_rotated_azimuth(noise, psi):
    h = load_hrirs()
    scene = foa.encode_foa(noise, 40.0, 0.0)
    camera = foa.decode_foa(foa.rotate_foa(scene, yaw_deg=psi), h)
    np.testing.assert_allclose(camera, render_static(noise, 40.0 - psi, 0.0, h), atol=2e-5)
    scene_rotation = foa.decode_foa(foa.rotate_foa(scene, yaw_deg=-psi), h)
    np.testing.assert_allclose(scene_rotation, render_static(noise, 40.0 + psi, 0.0, h), atol=2e-5)
    # the same with every layout and decoder of the SH path (elevated source, t-design keeps Z)
    for decoder in sh_render.DECODERS:
        got = foa.decode_foa(foa.rotate_foa(foa.encode_foa(noise, 40.0, 20.0), yaw_deg=psi), h, decoder, "tdesign")
        want = render_static(noise, 40.0 - psi, 20.0, h, decoder=decoder, layout="tdesign")
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_camera_trajectory(noise):
    h = load_hrirs()
    scene = foa.encode_foa(noise, 0.0, 0.0)
    # a constant trajectory is the fixed rotation
    fixed = foa.rotate_foa(scene, 30.0, 5.0, -4.0)
    np.testing.assert_allclose(foa.rotate_foa(scene, 30.0, 5.0, -4.0, times_s=[0.0, 0.5, 1.0]), fixed, atol=2e-6)
    # panning left by 90 degrees over the clip moves a frontal source into the right ear
    out = foa.render_rotated([noise], [0.0], [0.0], h, times_s=[0.0, 1.0], yaw_deg=[0.0, 90.0])
    q = FS // 32  # 31 ms: the camera turns under 3 degrees within it
    ild = [10 * np.log10(np.sum(seg[0].astype(float) ** 2) / np.sum(seg[1].astype(float) ** 2))
           for seg in (out[:, :q], out[:, -q:])]
    assert abs(ild[0]) < 1.0 and ild[1] < -5.0
    # the rotation moves smoothly: no sample-to-sample jump in the X channel beyond the signal's own
    pan = foa.rotate_foa(foa.encode_foa(np.ones(FS, np.float32), 0.0, 0.0), times_s=[0.0, 1.0], yaw_deg=[0.0, 90.0])
    assert np.abs(np.diff(pan[3])).max() < 2 * np.pi / 2 / FS * 1.01  # d/dn cos(pi/2 * n/FS) = pi/2/FS max


def test_bad_input_raises_readable_errors(noise):
    with pytest.raises(ValueError, match="FOA"):
        foa.rotate_foa(np.zeros((3, 10)), 10.0)
    with pytest.raises(ValueError, match="increasing"):
        foa.rotate_foa(np.zeros((4, 10)), [0.0, 10.0], times_s=[1.0, 0.0])
    with pytest.raises(ValueError, match="one mono"):
        foa.encode_foa(np.zeros((2, 10)), 0.0, 0.0)
