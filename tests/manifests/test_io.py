"""The atomic writer on a real full disk (a 64 KiB tmpfs; the tests run as root, here and in CI)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from manifests.io import atomic_write_bytes, is_disk_full


@pytest.fixture
def tiny_volume(tmp_path):
    folder = str(tmp_path / "vol")
    os.makedirs(folder)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=False)


def test_a_write_that_finds_no_space_names_its_file_and_leaves_nothing(tiny_volume):
    target = os.path.join(tiny_volume, "clip", "binaural.npy")
    atomic_write_bytes(os.path.join(tiny_volume, "fits.bin"), b"x" * 32768)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"x" * 65536)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == target
    assert is_disk_full(caught.value)
    assert is_disk_full(f"convert (mono): {caught.value}")  # a stage's reason quoting it, as rows carry it
    assert not is_disk_full("cannot read container: File too large")  # a bad input's words: that clip fails alone
    assert os.listdir(os.path.dirname(target)) == []  # no .tmp-* leftover, no half-written target
    assert open(os.path.join(tiny_volume, "fits.bin"), "rb").read() == b"x" * 32768
