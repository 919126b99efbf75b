"""A batch run (``psnmf unmix a b -o OUT``) locks ``OUT`` for its whole run: a second batch
or a single run into ``OUT`` stops at once naming the holder's PID, and the first batch's
folders and index are left complete. Tested with real processes, as the single-folder lock
in ``tests/test_results_set.py``, on two 16 x 16 pixel spectrum images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_toy

from psnmf import io as pio
from psnmf.cli import main
from psnmf.io.results import folder_lock, lock_path

FAST = ["-k", "2", "--bin", "2", "--bootstrap", "0", "--quiet", "--max-iter", "60",
        "--max-iter-full", "20"]
FAST_API = {"n_components": 2, "bin_factor": 2, "n_boot": 0, "progress": False,
            "max_iter": 60, "max_iter_full": 20}


def tiny_npz(path: Path, seed: int) -> Path:
    """A 16 x 16 x 200 three-phase spectrum image (Fe, O; 200 kV) as .npz."""
    toy = make_toy(16, 16, 200, counts=80.0, seed=seed)
    np.savez(path, counts=toy.counts.astype(np.uint16), energy_scale=0.05,
             energy_offset=0.0, elements=np.array(["Fe", "O"]), beam_energy=200.0)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    return [tiny_npz(folder / "a.npz", 0), tiny_npz(folder / "b.npz", 1)]


def test_lock_path_is_the_one_a_single_run_takes(tmp_path):
    """The batch locks the same file as :class:`psnmf.io.ResultsFolder` does for ``OUT``."""
    out = tmp_path / "OUT"
    assert lock_path(out) == tmp_path / ".OUT.psnmf-lock"
    with pio.ResultsFolder(out, command="test"):
        assert lock_path(out).exists()
        with pytest.raises(pio.OutputLockedError, match=f"PID {os.getpid()}"), \
                folder_lock(out):
            pass
    assert not lock_path(out).exists()


def test_a_second_batch_into_the_same_folder_stops_at_once_naming_the_pid(
        tmp_path, inputs, capsys):
    out = tmp_path / "OUT"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(
        [sys.executable, "-m", "psnmf.cli", "unmix", *map(str, inputs), "-o", str(out),
         *FAST], stderr=subprocess.PIPE, text=True, env=env)
    lock = tmp_path / ".OUT.psnmf-lock"
    deadline = time.monotonic() + 120
    # the lock file exists from its open(); the holder writes its PID just after the flock
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.exists(), "the first batch never took the lock"
    t0 = time.monotonic()
    code = main(["unmix", *map(str, inputs), "-o", str(out), "--overwrite", *FAST])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    single = main(["unmix", str(inputs[0]), "-o", str(out), "--overwrite", *FAST])
    err_single = capsys.readouterr().err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert code == 2 and took < 5, (code, took)
    assert "in use by another psnmf run" in err and f"PID {first.pid}" in err
    assert "Traceback" not in err
    assert single == 2 and f"PID {first.pid}" in err_single
    index = json.loads((out / "index.json").read_text())
    assert index["status"] == {"done": 2}
    assert [f["folder"] for f in index["files"]] == ["a", "b"]
    for name in ("a", "b"):
        assert pio.read_manifest(out / name)["written_by"] == "psnmf unmix"
    assert "a/report.html" in (out / "index.html").read_text()
    assert not lock.exists()  # released when the batch ended


HOLDER = textwrap.dedent(
    """
    import sys, time
    from psnmf.io.results import folder_lock

    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_a_batch_into_a_held_folder_writes_nothing_and_runs_after_the_holder_dies(
        tmp_path, inputs):
    from psnmf.pipeline import unmix_files

    out = tmp_path / "OUT"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(pio.OutputLockedError) as info:
            unmix_files(inputs, out, **FAST_API)
        assert time.monotonic() - t0 < 2
        assert f"PID {holder.pid}" in str(info.value) and f"'{out.absolute()}'" in str(
            info.value)
        assert not out.exists()  # nothing written: no folder, no index
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the killed holder's lock: the batch runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = unmix_files(inputs, out, **FAST_API)
    assert not batch.failed
    assert json.loads((out / "index.json").read_text())["status"] == {"done": 2}
