"""reidtools.fileio: atomic writes keep the umask's mode and leave nothing behind on failure."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from reidtools.errors import ReidError
from reidtools.fileio import atomic_write, write_json_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_safetensors_weights_honour_the_umask(tmp_path, umask, mode):
    from safetensors.numpy import save_file  # creates its files 0600 whatever the umask

    old = os.umask(umask)
    try:
        atomic_write(str(tmp_path / "w.safetensors"), lambda p: save_file({"a": np.zeros(3)}, p))
        write_json_atomic(str(tmp_path / "m.json"), {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == mode
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == mode


def test_failed_write_names_the_file_and_leaves_no_temp(tmp_path):
    def full(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ReidError, match=r"x.safetensors: cannot write \(No space left on device\)"):
        atomic_write(str(tmp_path / "x.safetensors"), full)
    assert os.listdir(tmp_path) == []
