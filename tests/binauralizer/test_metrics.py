"""Binaural metrics against closed-form cases and a measured KEMAR rendering."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from binauralizer import metrics as M

SR = 16000
SOFA = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"


def noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * SR))


def delayed(x: np.ndarray, d: int) -> np.ndarray:
    return np.concatenate([np.zeros(d), x[: x.size - d]])


@functools.lru_cache(maxsize=None)
def kemar_hrir(az: float) -> np.ndarray:
    import sofar
    from scipy.signal import resample_poly

    sofa = sofar.read_sofa(SOFA, verbose=False)
    pos = np.asarray(sofa.SourcePosition)
    i = int(np.argmin(np.abs((pos[:, 0] - az + 180) % 360 - 180) + np.abs(pos[:, 1])))
    return resample_poly(np.asarray(sofa.Data_IR)[i], 160, 441, axis=-1)


def kemar_render(az: float, seconds: float = 2.0) -> np.ndarray:
    from scipy.signal import fftconvolve

    x = noise(seconds, seed=3)
    h = kemar_hrir(az)
    return np.stack([fftconvolve(x, h[0])[: x.size], fftconvolve(x, h[1])[: x.size]])


def test_pure_delay_gives_exact_itd_and_full_correlation():
    x = noise(1.0)
    for d in (3, 8, 12):
        left_leads = np.stack([x, delayed(x, d)])  # right hears it d samples later: source on the left
        assert M.itd_ms(left_leads, SR) == pytest.approx(d / SR * 1e3, abs=0.005)
        assert M.itd_ms(left_leads[::-1].copy(), SR) == pytest.approx(-d / SR * 1e3, abs=0.005)
        assert M.iacc(left_leads, SR) > 0.99
        frames = M.framewise_itd_ms(left_leads, SR)
        assert np.nanmedian(frames) == pytest.approx(d / SR * 1e3, abs=0.005)
    m = M.clip_metrics(np.stack([x, delayed(x, 8)]), SR)
    assert m["itd_ms"] == pytest.approx(0.5, abs=0.005)
    assert m["iacc"] > 0.98  # per 0.5 s segment: the first 8 samples of each differ
    assert abs(m["ild_broadband_db"]) < 0.05
    assert m["isd_db"] < 0.5  # a delay has no interaural spectral shape


def test_pure_gain_gives_exact_ild_and_no_delay():
    x = noise(1.0)
    for g in (0.5, 0.1, 2.0):
        pair = np.stack([x, g * x])
        expected = -20 * np.log10(g)  # left relative to right
        m = M.clip_metrics(pair, SR)
        assert m["ild_broadband_db"] == pytest.approx(expected, abs=1e-6)
        assert m["ild_db"] == pytest.approx(abs(expected), abs=1e-3)  # every bin has the same ratio
        assert m["itd_ms"] == pytest.approx(0.0, abs=1e-9)
        assert m["itd_broadband_ms"] == pytest.approx(0.0, abs=1e-9)
        assert m["iacc"] == pytest.approx(1.0, abs=1e-9)
        assert m["ipd_rad"] == pytest.approx(0.0, abs=1e-6)
        assert m["isd_db"] == pytest.approx(0.0, abs=1e-3)


def test_identical_channels():
    x = noise(1.0, seed=1)
    m = M.clip_metrics(np.stack([x, x]), SR)
    assert m["ild_db"] == 0.0 and m["isd_db"] == 0.0
    assert m["ipd_rad"] == pytest.approx(0.0, abs=1e-7)
    assert m["ild_broadband_db"] == 0.0
    assert m["itd_ms"] == 0.0 and m["itd_broadband_ms"] == 0.0
    assert m["iacc"] == pytest.approx(1.0, abs=1e-12)


def test_uncorrelated_noise_has_small_iacc():
    pair = np.stack([noise(1.0, seed=1), noise(1.0, seed=2)])
    assert M.iacc(pair, SR) < 0.1
    m = M.clip_metrics(pair, SR)
    assert m["iacc"] < 0.1
    # "Spatial" by the reference-free statistics although nothing is localised: why lateral agreement exists.
    assert m["ipd_rad"] > 1.2


@pytest.mark.parametrize("az, sign", [(90, 1), (-90, -1)])
def test_kemar_at_90_degrees(az, sign):
    x = kemar_render(az)
    m = M.clip_metrics(x, SR)
    assert np.sign(m["ild_broadband_db"]) == sign
    assert abs(m["ild_broadband_db"]) == pytest.approx(9.4, abs=0.5)  # REFERENCE.md: 9.4 dB
    assert 0.6 <= sign * m["itd_broadband_ms"] <= 0.75
    assert 0.6 <= m["itd_ms"] <= 0.75
    assert 0.5 < m["iacc"] < 0.9
    assert m["isd_db"] > 3  # head shadow grows with frequency


def test_kemar_at_30_degrees_is_between():
    m30, m90 = M.clip_metrics(kemar_render(30), SR), M.clip_metrics(kemar_render(90), SR)
    assert 0.2 < m30["itd_broadband_ms"] < 0.3  # REFERENCE.md: 0.25 ms
    assert m30["itd_broadband_ms"] < m90["itd_broadband_ms"]
    assert m30["iacc"] > m90["iacc"]


def test_lateral_agreement_follows_the_picture():
    half = int(1.0 * SR)
    left, right = kemar_render(60)[:, :half], kemar_render(-60)[:, :half]
    x = np.concatenate([left, right], axis=1)  # 1 s on the left, then 1 s on the right
    fps = 8
    az = np.r_[np.full(8, 60.0), np.full(8, -60.0)]
    traj = np.stack([az, np.zeros(16), np.ones(16)], 1)
    assert M.clip_metrics(x, SR, traj=traj, traj_fps=fps)["lateral_agree"] == 1.0
    assert M.clip_metrics(x, SR, traj=traj * [-1, 1, 1], traj_fps=fps)["lateral_agree"] == 0.0
    half_wrong = np.stack([np.full(16, 60.0), np.zeros(16), np.ones(16)], 1)
    assert M.clip_metrics(x, SR, traj=half_wrong, traj_fps=fps)["lateral_agree"] == 0.5
    centred = traj * [0.1, 1, 1]  # |az| 6 deg: centred, nothing to agree with
    m = M.clip_metrics(x, SR, traj=centred, traj_fps=fps)
    assert m["lateral_agree"] is None and m["lateral_segments"] == 0
    # a mono (identical) rendering never agrees with an off-centre picture
    mono = np.stack([x[0], x[0]])
    assert M.clip_metrics(mono, SR, traj=traj, traj_fps=fps)["lateral_agree"] == 0.0


def test_reference_errors():
    ref = kemar_render(60)
    zero = M.reference_errors(ref, ref, SR)
    assert zero == {"d_ild_db": 0.0, "d_ipd_rad": 0.0, "d_itd_us": 0.0, "d_itd_lf_us": 0.0, "stft_distance": 0.0,
                    "envelope_distance": 0.0}
    swapped = M.reference_errors(ref[::-1].copy(), ref, SR)
    itd = M.itd_ms(ref, SR)
    assert swapped["d_itd_us"] == pytest.approx(2 * itd * 1e3, rel=1e-6)
    low = M.itd_ms(ref, SR, max_hz=M.ITD_MAX_HZ)  # KEMAR at 60 degrees: about 0.5 ms in both bands
    assert 0.35 < low < 0.75 and abs(low - itd) < 0.15
    assert swapped["d_itd_lf_us"] == pytest.approx(2 * low * 1e3, rel=1e-6)
    assert swapped["d_ild_db"] > 5
    assert swapped["d_ipd_rad"] > 0.5
    assert swapped["stft_distance"] > 0 and swapped["envelope_distance"] > 0
    scaled = M.reference_errors(3.0 * ref, ref, SR)  # peak normalisation: level does not matter
    assert scaled["stft_distance"] == pytest.approx(0.0, abs=1e-9)
    assert scaled["envelope_distance"] == pytest.approx(0.0, abs=1e-9)
    assert scaled["d_ild_db"] == pytest.approx(0.0, abs=1e-4)


def test_stft_frames_match_librosa_convention():
    x = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    spec = M.stft(x)
    assert spec.shape == (257, 1 + SR // 160)
    assert int(np.argmax(np.abs(spec[:, 50]))) == 32  # 1000 Hz / (16000 / 512)


def test_silence_and_bad_input():
    m = M.clip_metrics(np.zeros((2, SR)), SR)
    assert np.isnan(m["iacc"]) and np.isnan(m["itd_ms"]) and np.isnan(m["ild_broadband_db"])
    assert m["ild_db"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        M.clip_metrics(np.zeros((3, SR)), SR)
    with pytest.raises(ValueError, match="non-finite"):
        M.clip_metrics(np.full((2, SR), np.nan), SR)
