"""Fault tests: a run killed while writing never damages an earlier result and never leaves a
half-written result under the final name; Ctrl-C stops cleanly with a message and code 130
(SIGTERM with 143); ``psnmf unmix --overwrite`` killed at several moments of writing its set
leaves the earlier results byte-identical.

The writers run in a child process that the test kills with SIGKILL (no cleanup at all, as
after a power cut or the OOM killer) as soon as the temporary file of the write appears, so
the kill lands while the result is being written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_toy

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


# ---------------------------------------------------------------------------
# psnmf unmix killed while writing its set: the earlier results stay byte-identical
# ---------------------------------------------------------------------------
CHILD_UNMIX = textwrap.dedent(
    """
    import os, sys, time
    from psnmf.cli import main
    import exspy, hyperspy.api, psnmf.pipeline, psnmf.report  # noqa: E401, F401

    real_fsync = os.fsync

    def slow_fsync(fd):  # the text writers (report.html, summary.json) take 0.3 s each,
        time.sleep(0.3)  # so that a kill can land while they are being written
        real_fsync(fd)

    real_replace = os.replace

    def slow_replace(src, dst):  # every temporary of the set lives 0.3 s before its
        if ".tmp-" in os.fspath(src):  # rename, so that the test, polling, always sees it
            time.sleep(0.3)  # (a small .hspy is written in milliseconds)
        real_replace(src, dst)

    unmix_module = sys.modules["psnmf.pipeline.unmix"]
    real_run = unmix_module._run

    def slow_run(*args, **kwargs):  # the work takes at least 1 s, so that a signal sent
        time.sleep(1.0)  # 0.3 s after it starts lands while it computes on any machine
        return real_run(*args, **kwargs)

    os.fsync = slow_fsync
    os.replace = slow_replace
    unmix_module._run = slow_run
    print("ready", flush=True)
    sys.exit(main(sys.argv[1:]))
    """
)
UNMIX_FAST = ["-k", "2", "--bin", "2", "--bootstrap", "0", "--quiet", "--max-iter", "60",
              "--max-iter-full", "20"]


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): pio.file_checksum(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """``unmix base.npz -o R -k 2`` on a 16 x 16 x 200 image: (input, results folder)."""
    from psnmf.cli import main

    folder = tmp_path_factory.mktemp("earlier")
    toy = make_toy(16, 16, 200, counts=80.0, seed=0)
    base = folder / "base.npz"
    np.savez(base, counts=toy.counts.astype(np.uint16), energy_scale=0.05,
             elements=np.array(["Fe", "O"]), beam_energy=200.0)
    assert main(["unmix", str(base), "-o", str(folder / "R"), *UNMIX_FAST]) == 0
    return base, folder / "R"


@pytest.mark.parametrize("sig, pattern", [
    (signal.SIGINT, None),  # while computing, before anything is written
    (signal.SIGINT, ".component_spectra.hspy.tmp-*"),  # the first new .hspy
    (signal.SIGKILL, ".component_maps.hspy.tmp-*"),
    (signal.SIGTERM, ".component_maps.png.tmp-*"),
    (signal.SIGKILL, ".report.html.tmp-*"),
    (signal.SIGINT, ".summary.json.tmp-*"),  # the last file
])
def test_unmix_overwrite_interrupted_keeps_the_earlier_results(tmp_path, earlier_run, sig,
                                                               pattern):
    """Issue 13, item 1: ``unmix -k 3 --seed 1 --overwrite`` into the folder of a k = 2 run,
    stopped by SIGINT, SIGTERM or SIGKILL at several moments of writing: the folder holds
    the k = 2 results byte for byte, and Ctrl-C/SIGTERM say so and leave nothing behind."""
    base, earlier = earlier_run
    out = tmp_path / "R"
    shutil.copytree(earlier, out)
    before = _snapshot(out)
    argv = ["unmix", str(base), "-o", str(out), "--overwrite", "--seed", "1", "-k", "3",
            *UNMIX_FAST[2:]]
    proc = _start(CHILD_UNMIX, *argv)
    if pattern is None:  # the staging folder is made, its signal handlers set, the work
        started = _wait_for(proc, tmp_path, ".R.psnmf-staging-*")  # (1 s at least) begun
        time.sleep(0.3)
        seen = started and not list(tmp_path.glob(".R.psnmf-staging-*/*"))
    else:
        seen = _wait_for(proc, tmp_path, ".R.psnmf-staging-*/" + pattern)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert seen, "the child got past the moment before the signal: nothing was tested"
    assert _snapshot(out) == before, "the earlier results changed"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        # only hidden leftovers, which the next run into R removes
        assert all(n.startswith(".R.psnmf-") for n in os.listdir(tmp_path) if n != "R")
        with pytest.raises(RuntimeError), pio.ResultsFolder(out, overwrite=True):
            raise RuntimeError("nothing to write")
    else:
        assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
        assert "Traceback" not in err and f"'{out}' was left as it was" in err
    assert sorted(os.listdir(tmp_path)) == ["R"]
    assert _snapshot(out) == before


def _wait_for(proc: subprocess.Popen, folder: Path, pattern: str) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(folder.glob(pattern)):
            return True
        time.sleep(0.001)
    return False
