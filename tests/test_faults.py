"""Fault tests: a run killed while writing never damages an earlier result and never leaves a
half-written result under the final name; Ctrl-C stops cleanly with a message and code 130.

The writers run in a child process that the test kills with SIGKILL (no cleanup at all, as
after a power cut or the OOM killer) as soon as the temporary file of the write appears, so
the kill lands while the result is being written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from psnmf import io as pio

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD_SAVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from exspy.signals import EDSTEMSpectrum
    from psnmf import io as pio

    rng = np.random.default_rng(1)
    s = EDSTEMSpectrum(rng.random((64, 64, 2048)))  # 64 MB, incompressible: a slow write
    print("ready", flush=True)
    pio.save_signal(s, sys.argv[1], overwrite=True)
    print("done", flush=True)
    """
)

CHILD_CLI = textwrap.dedent(
    """
    import sys
    from psnmf.cli import main

    # the heavy imports of the subcommands happen here, not after "ready": a SIGINT that
    # lands inside a third-party import can be swallowed there, which made the test racy
    import exspy, hyperspy.api, psnmf.pipeline, psnmf.simulate  # noqa: E401, F401

    print("ready", flush=True)
    sys.exit(main(sys.argv[1:]))
    """
)


def _earlier_result(path: Path) -> str:
    """Write an earlier, complete result at ``path``; return its checksum."""
    from exspy.signals import EDSTEMSpectrum

    counts = np.random.default_rng(0).poisson(3.0, (6, 5, 40))
    s = EDSTEMSpectrum(counts)
    s.axes_manager.signal_axes[0].units = "keV"
    pio.save_signal(s, path)
    return pio.file_checksum(path)


def _start(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # imports done, the work starts
    assert line.strip() == "ready", proc.stderr.read()
    return proc


def _kill_when_temporary_appears(proc: subprocess.Popen, folder: Path, pattern: str) -> bool:
    """SIGKILL ``proc`` as soon as a file matching ``pattern`` exists in ``folder``."""
    deadline = time.monotonic() + 120
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        if any(folder.glob(pattern)):
            seen = True
            break
        time.sleep(0.001)
    proc.kill()
    proc.wait(timeout=30)
    return seen


def _assert_earlier_result_intact(path: Path, checksum: str) -> None:
    assert pio.file_checksum(path) == checksum, "the earlier result was damaged"
    signal = pio.load_spectrum_image(path)  # and it still loads
    assert signal.data.shape == (6, 5, 40)
    # nothing that looks like a complete result: only hidden temporary names may remain
    visible = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
    assert visible == [path.name], visible


def test_save_signal_killed_mid_write_keeps_the_earlier_file(tmp_path):
    out = tmp_path / "denoised.hspy"
    checksum = _earlier_result(out)
    proc = _start(CHILD_SAVE, str(out))
    seen = _kill_when_temporary_appears(proc, tmp_path, ".denoised.hspy.tmp-*")
    assert seen, "the child finished before the kill: the test did not test anything"
    assert proc.returncode == -signal.SIGKILL
    _assert_earlier_result_intact(out, checksum)
    leftovers = list(tmp_path.glob(".denoised.hspy.tmp-*"))
    for tmp in leftovers:  # a hard kill may leave the hidden temporary: never loadable as
        assert tmp.name.startswith(".")  # the result, and named so that nobody takes it


def test_simulate_killed_mid_write_keeps_the_earlier_file(tmp_path):
    out = tmp_path / "sim.hspy"
    checksum = _earlier_result(out)
    proc = _start(
        CHILD_CLI, "simulate", "mantle", "--shape", "160x160", "--seed", "1", "-o", str(out)
    )
    seen = _kill_when_temporary_appears(proc, tmp_path, ".sim.*tmp*")
    assert seen, "the child finished before the kill: the test did not test anything"
    _assert_earlier_result_intact(out, checksum)


def test_ctrl_c_stops_cleanly_with_code_130(tmp_path):
    out = tmp_path / "sim.hspy"
    checksum = _earlier_result(out)
    proc = _start(
        CHILD_CLI, "simulate", "mantle", "--shape", "160x160", "--seed", "1", "-o", str(out)
    )
    time.sleep(0.5)  # inside main(), simulating (several seconds at this size)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _assert_earlier_result_intact(out, checksum)
    assert not list(tmp_path.glob(".*tmp*")), "Ctrl-C left a temporary file behind"


def test_interrupted_save_in_process_removes_its_temporary(tmp_path, monkeypatch):
    """KeyboardInterrupt inside the writer (same process): temporary removed, old file kept."""
    from exspy.signals import EDSTEMSpectrum

    out = tmp_path / "maps.hspy"
    checksum = _earlier_result(out)

    def interrupted_save(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(EDSTEMSpectrum, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        pio.save_signal(EDSTEMSpectrum(np.ones((2, 2, 3))), out, overwrite=True)
    monkeypatch.undo()
    _assert_earlier_result_intact(out, checksum)
    assert not list(tmp_path.glob(".*"))
