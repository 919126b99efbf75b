"""Results written as one set (issue 13): staged and swapped in whole, locked for the run,
never replacing an input or a user's file, a manifest of psnmf's files, full disks survived.

:class:`psnmf.io.ResultsFolder` is tested directly (fast) and through ``unmix`` and the
command line on a 16 x 16 pixel spectrum image (a few seconds per run). The kill tests of
the command line are in ``tests/test_faults.py``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
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
from psnmf.io import results as results_mod

FAST = ["-k", "2", "--bin", "2", "--bootstrap", "0", "--quiet", "--max-iter", "60",
        "--max-iter-full", "20"]
FAST_API = {"n_components": 2, "bin_factor": 2, "n_boot": 0, "progress": False,
            "max_iter": 60, "max_iter_full": 20}


def tiny_npz(path: Path, **extra) -> Path:
    """A 16 x 16 x 200 three-phase spectrum image (Fe, O; 200 kV) as .npz."""
    toy = make_toy(16, 16, 200, counts=80.0, seed=0)
    np.savez(path, counts=toy.counts.astype(np.uint16), energy_scale=0.05, energy_offset=0.0,
             elements=np.array(["Fe", "O"]), beam_energy=200.0, **extra)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` (hidden ones included), by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    """psnmf's hidden helpers next to ``folder`` (staging folders, lock files)."""
    return sorted(n for n in os.listdir(folder.parent) if n.startswith(f".{folder.name}."))


def write_set(folder: Path, files: dict[str, str], **kwargs) -> pio.ResultsFolder:
    with pio.ResultsFolder(folder, command="test", **kwargs) as res:
        for name, text in files.items():
            (res.path / name).write_text(text)
    return res


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_npz(tmp_path_factory.mktemp("input") / "base.npz")


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, base) -> Path:
    """A complete earlier run (k = 2) of ``unmix base.npz``, copied by each test."""
    out = tmp_path_factory.mktemp("earlier") / "R"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from psnmf.pipeline import unmix

        unmix(base, output_dir=out, **FAST_API)
    return out


@pytest.fixture
def R(tmp_path, earlier) -> Path:
    out = tmp_path / "R"
    shutil.copytree(earlier, out, copy_function=shutil.copy2)
    return out


# ---------------------------------------------------------------------------
# The set: staged, swapped in whole, manifest
# ---------------------------------------------------------------------------
def test_a_new_folder_appears_complete_with_its_manifest(tmp_path):
    out = tmp_path / "new" / "R"
    res = write_set(out, {"a.txt": "1", "b.txt": "22"})
    assert sorted(os.listdir(out)) == [pio.MANIFEST_NAME, "a.txt", "b.txt"]
    assert siblings(out) == []  # no staging folder, no lock file left
    manifest = pio.read_manifest(out)
    assert manifest == res.manifest
    assert manifest["files"]["b.txt"]["size"] == 2
    assert manifest["files"]["b.txt"]["sha256"] == hashlib.sha256(b"22").hexdigest()
    assert manifest["written_by"] == "test" and manifest["kept"] == []


def test_the_staging_folder_is_a_hidden_sibling(tmp_path):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "old"})
    with pio.ResultsFolder(out, overwrite=True) as res:
        assert res.path.parent == tmp_path and res.path.name.startswith(".R.psnmf-staging-")
        (res.path / "a.txt").write_text("new")
        assert (out / "a.txt").read_text() == "old"  # nothing visible before the swap
    assert (out / "a.txt").read_text() == "new"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), OSError(
    errno.ENOSPC, "No space left on device")])
def test_an_error_before_the_swap_leaves_the_folder_byte_identical(tmp_path, error):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "old", "b.txt": "old"})
    (out / "mine.txt").write_text("user")
    before = snapshot(out)
    with pytest.raises(type(error)) as info, pio.ResultsFolder(out, overwrite=True) as res:
        (res.path / "a.txt").write_text("new")
        raise error
    assert snapshot(out) == before
    assert siblings(out) == []
    if isinstance(error, KeyboardInterrupt):
        assert any("was left as it was" in n for n in info.value.__notes__)


def test_overwrite_replaces_psnmfs_files_removes_stale_ones_and_keeps_the_users(tmp_path):
    out = tmp_path / "R"
    write_set(out, {"report.html": "old", "sweep.png": "old", "smoothing.png": "old"})
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "data.bin").write_bytes(b"\0" * 100)
    res = write_set(out, {"report.html": "new"}, overwrite=True)
    assert sorted(os.listdir(out)) == [pio.MANIFEST_NAME, "mine", "notes.txt", "report.html"]
    assert (out / "report.html").read_text() == "new"
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "mine" / "data.bin").read_bytes() == b"\0" * 100
    assert res.manifest["replaced"] == ["report.html"]
    assert res.manifest["removed"] == ["smoothing.png", "sweep.png"]
    assert res.manifest["kept"] == ["mine", "notes.txt"]


def test_a_users_file_with_a_psnmf_name_is_never_replaced(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / "report.html").write_text("<html>my own report</html>")
    (out / "summary.json").write_text("{}")
    with pytest.raises(pio.OutputExistsError) as info:
        pio.ResultsFolder(out, overwrite=True, names={"report.html", "summary.json"}).__enter__()
    msg = str(info.value)
    assert "report.html, summary.json" in msg and "did not write" in msg and "-o" in msg
    assert (out / "report.html").read_text() == "<html>my own report</html>"
    assert siblings(out) == []  # the lock was released


def test_a_psnmf_file_changed_by_the_user_counts_as_the_users(tmp_path):
    out = tmp_path / "R"
    write_set(out, {"report.html": "psnmf", "a.txt": "psnmf"})
    time.sleep(0.01)
    (out / "report.html").write_text("edited by hand")
    with pytest.raises(pio.OutputExistsError, match=r"report.html \(changed since"):
        pio.ResultsFolder(out, overwrite=True, names={"report.html"}).__enter__()
    res = write_set(out, {"b.txt": "new"}, overwrite=True, names={"b.txt"})
    assert (out / "report.html").read_text() == "edited by hand"
    assert res.manifest["kept"] == ["report.html"] and res.manifest["removed"] == ["a.txt"]


def test_a_folder_written_before_manifests_is_recognised_by_its_summary(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(
        {"psnmf_version": "0.0.9", "files": {"maps": "component_maps.hspy"}}))
    (out / "component_maps.hspy").write_text("old")
    (out / "report.html").write_text("old")
    (out / "notes.txt").write_text("mine")
    res = write_set(out, {"summary.json": "{}"}, overwrite=True,
                    names={"summary.json", "report.html", "component_maps.hspy"})
    assert sorted(os.listdir(out)) == [pio.MANIFEST_NAME, "notes.txt", "summary.json"]
    assert res.manifest["removed"] == ["component_maps.hspy", "report.html"]


def test_not_empty_without_overwrite_is_refused(tmp_path):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "1"})
    with pytest.raises(pio.OutputExistsError, match="not empty.*--overwrite"):
        write_set(out, {"a.txt": "2"})
    assert (out / "a.txt").read_text() == "1"


def test_swap_without_renameat2_and_recovery_of_a_crash_between_the_renames(
        tmp_path, monkeypatch):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "1"})
    monkeypatch.setattr(results_mod, "_exchange", lambda a, b: False)
    write_set(out, {"a.txt": "2"}, overwrite=True)
    assert (out / "a.txt").read_text() == "2" and siblings(out) == []
    # a kill between "R -> .R.psnmf-old-<pid>" and "staging -> R": both sets on disk, no R
    os.rename(out, tmp_path / ".R.psnmf-old-99999")
    shutil.copytree(tmp_path / ".R.psnmf-old-99999", tmp_path / ".R.psnmf-staging-99999")
    with pio.ResultsFolder(out, overwrite=True) as res:  # the next run puts R back first
        assert (out / "a.txt").read_text() == "2"
        (res.path / "a.txt").write_text("3")
    assert (out / "a.txt").read_text() == "3" and siblings(out) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "1"})
    (tmp_path / ".R.psnmf-staging-12345").mkdir()
    (tmp_path / ".R.psnmf-staging-12345" / "half.hspy").write_text("half")
    (out / ".a.txt.tmp-0123abcd").write_text("half")  # a writer's temporary inside R
    write_set(out, {"a.txt": "2"}, overwrite=True)
    assert siblings(out) == [] and sorted(os.listdir(out)) == [pio.MANIFEST_NAME, "a.txt"]


def test_the_current_folder_as_output_is_staged_inside_it(tmp_path, monkeypatch):
    out = tmp_path / "R"
    write_set(out, {"a.txt": "1"})
    monkeypatch.chdir(out)
    with pio.ResultsFolder(".", overwrite=True) as res:
        assert res.path.parent.resolve() == out.resolve()
        (res.path / "b.txt").write_text("2")
    assert sorted(os.listdir(out)) == [pio.MANIFEST_NAME, "b.txt"]


# ---------------------------------------------------------------------------
# Inputs are never replaced
# ---------------------------------------------------------------------------
def test_an_input_inside_the_results_it_would_replace_is_refused(R, capsys):
    """``unmix R/denoised.hspy -o R --overwrite`` (the input is a result of the earlier run)."""
    target = R / "component_spectra.hspy"
    before = snapshot(R)
    code = main(["unmix", str(target), "-o", str(R), "--overwrite", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"'{R}' would overwrite the input '{target}'" in err and "-o" in err
    assert snapshot(R) == before


def test_a_users_input_file_in_the_folder_is_refused_only_if_it_would_be_replaced(
        tmp_path, base, capsys):
    from psnmf.pipeline import unmix

    out = tmp_path / "self"
    out.mkdir()
    signal = pio.load_spectrum_image(base)
    pio.save_signal(signal, out / "denoised.hspy")
    before = snapshot(out)
    with pytest.raises(pio.OutputOverlapsInputError, match="denoised.hspy"):
        unmix(out / "denoised.hspy", output_dir=out, overwrite=True, write_denoised=True,
              **FAST_API)
    assert snapshot(out) == before
    with warnings.catch_warnings():  # without the dense cubes it is kept: allowed
        warnings.simplefilter("ignore")
        res = unmix(out / "denoised.hspy", output_dir=out, overwrite=True, **FAST_API)
    assert snapshot(out)["denoised.hspy"] == before["denoised.hspy"]
    assert pio.read_manifest(out)["kept"] == ["denoised.hspy"]
    assert res.paths["summary"] == out / "summary.json"


@pytest.mark.parametrize("case", ["same", "inside", "hardlink"])
def test_overlapping_inputs_are_refused(tmp_path, case):
    out = tmp_path / "R"
    write_set(out, {"data.npz": "x"})
    if case == "same":
        inputs = [out]
    elif case == "inside":
        inputs = [tmp_path]  # the output lies inside the input (a folder)
    else:
        os.link(out / "data.npz", tmp_path / "elsewhere.npz")
        inputs = [tmp_path / "elsewhere.npz"]
    with pytest.raises(pio.OutputOverlapsInputError, match="would overwrite the input"):
        pio.ResultsFolder(out, overwrite=True, inputs=inputs).__enter__()


def test_ripple_companion_is_an_input():
    assert [p.name for p in pio.input_files("x.npz")] == ["x.npz"]


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    from psnmf.io import ResultsFolder

    with ResultsFolder(sys.argv[1], command="holder") as res:
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
        (res.path / "a.txt").write_text("holder")
    """
)


def test_a_second_run_into_a_locked_folder_stops_at_once_naming_the_pid(tmp_path):
    out = tmp_path / "R"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), "30"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(pio.OutputLockedError) as info:
            write_set(out, {"a.txt": "second"}, overwrite=True)
        assert time.monotonic() - t0 < 2
        msg = str(info.value)
        assert f"'{out}'" in msg and f"PID {proc.pid}" in msg and "another psnmf run" in msg
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the lock of the killed holder: the folder is usable again
    write_set(out, {"a.txt": "third"})
    assert (out / "a.txt").read_text() == "third"


def test_two_concurrent_unmix_runs_the_second_stops_with_a_message(tmp_path, base, capsys):
    out = tmp_path / "R"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(
        [sys.executable, "-m", "psnmf.cli", "unmix", str(base), "-o", str(out), *FAST],
        stderr=subprocess.PIPE, text=True, env=env)
    lock = tmp_path / ".R.psnmf-lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.exists(), "the first run never took the lock"
    code = main(["unmix", str(base), "-o", str(out), "--overwrite", *FAST])
    err = capsys.readouterr().err
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert code == 2 and "in use by another psnmf run" in err and f"PID {first.pid}" in err
    assert "Traceback" not in err
    assert pio.read_manifest(out)["written_by"] == "psnmf unmix"


# ---------------------------------------------------------------------------
# Full disks and write errors
# ---------------------------------------------------------------------------
def test_injected_enospc_while_writing_keeps_the_earlier_results(R, base, capsys,
                                                                 monkeypatch):
    from psnmf.pipeline import steps

    before = snapshot(R)
    real_save = steps._save
    calls = []

    def full_disk(signal, path):
        calls.append(path.name)
        if len(calls) == 3:  # two files written, the third hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(signal, path)

    monkeypatch.setattr(steps, "_save", full_disk)
    code = main(["unmix", str(base), "-o", str(R), "--overwrite", "--seed", "1",
                 *FAST[:1], "3", *FAST[2:]])
    err = capsys.readouterr().err
    assert len(calls) == 3
    assert code == 2 and "Traceback" not in err
    assert "Could not write the results" in err and "No space left on device" in err
    assert "was left as it was" in err
    assert snapshot(R) == before and siblings(R) == []


def test_too_little_free_space_is_refused_before_the_work(R, base, monkeypatch):
    from psnmf.pipeline import unmix

    before = snapshot(R)
    usage = shutil.disk_usage(R)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: usage._replace(free=100_000))
    t0 = time.monotonic()
    with pytest.raises(pio.InsufficientSpaceError) as info:
        unmix(base, output_dir=R, overwrite=True, **FAST_API)
    assert time.monotonic() - t0 < 5  # before loading and fitting
    msg = str(info.value)
    assert "Not enough free space" in msg and "100 kB free" in msg and "needed" in msg
    assert snapshot(R) == before and siblings(R) == []


def test_free_space_for_the_dense_cubes_is_checked_before_writing(R, base, monkeypatch):
    """The dense cubes need 4 bytes per value before compression: refused when the disk
    has room for the factors and report but not for them."""
    from psnmf.pipeline import steps, unmix

    before = snapshot(R)
    shape = (16, 16, 196)
    small = steps.result_bytes(shape, 2, write_denoised=False, report=True)
    big = steps.result_bytes(shape, 2, write_denoised=True, report=True)
    assert big - small >= 2 * 4 * 16 * 16 * 196
    usage = shutil.disk_usage(R)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=small + 1000))
    with pytest.raises(pio.InsufficientSpaceError, match="Not enough free space"):
        unmix(base, output_dir=R, overwrite=True, write_denoised=True, **FAST_API)
    assert snapshot(R) == before and siblings(R) == []


TMPFS_CHILD = textwrap.dedent(
    """
    import sys
    from psnmf.pipeline import steps

    if sys.argv[1] == "no-estimate":  # let the writes run into the full disk
        steps.result_bytes = lambda *args, **kwargs: 0
        steps.REPORT_BYTES = 0
    from psnmf.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1800 kB tmpfs: room for one set of results (1.1 MB), not two; skipped without
    root."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("needs Linux mount")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("mode", ["estimate", "no-estimate"])
def test_a_real_full_disk_keeps_the_earlier_results(small_tmpfs, base, mode):
    """On a small tmpfs: the space check refuses, or (estimate switched off) HDF5 and
    matplotlib run into ENOSPC: one message, exit 2, the earlier results byte-identical."""
    out = small_tmpfs / "R"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(*argv):
        return subprocess.run([sys.executable, "-c", TMPFS_CHILD, "no-estimate", "unmix",
                               str(base), "-o", str(out), *argv], capture_output=True,
                              text=True, env=env, timeout=300)

    first = run(*FAST)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    second = subprocess.run([sys.executable, "-c", TMPFS_CHILD, mode, "unmix", str(base),
                             "-o", str(out), "--overwrite", *FAST], capture_output=True,
                            text=True, env=env, timeout=300)
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    expected = "Not enough free space" if mode == "estimate" else "No space left on device"
    assert expected in second.stderr
    assert snapshot(out) == before and siblings(out) == []


# ---------------------------------------------------------------------------
# Through unmix and sweep
# ---------------------------------------------------------------------------
def test_unmix_overwrite_lists_what_it_replaced_removed_and_kept(R, base, capsys):
    (R / "notes.txt").write_text("my notes")
    assert (R / "smoothing.png").exists()
    argv = ["unmix", str(base), "-o", str(R), "--overwrite", "--smoothing", "none",
            *[a for a in FAST if a != "--quiet"]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "removed (earlier run)   smoothing.png" in out
    assert "kept (not psnmf's)      notes.txt" in out and "replaced (earlier run)" in out
    assert not (R / "smoothing.png").exists()  # stale figure of the earlier run: gone
    assert (R / "notes.txt").read_text() == "my notes"
    manifest = pio.read_manifest(R)
    summary = json.loads((R / "summary.json").read_text())
    assert set(manifest["files"]) == set(summary["files"].values())
    assert manifest["removed"] == ["smoothing.png"]


def test_sweep_writes_a_set_and_keeps_its_unmix_folder(tmp_path, base):
    from psnmf.pipeline import sweep

    out = tmp_path / "S"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sweep(base, bins=(2,), components=(2,), output_dir=out, progress=False)
        (out / "unmix").mkdir()
        (out / "unmix" / "summary.json").write_text("{}")
        again = sweep(base, bins=(2, 4), components=(2,), output_dir=out, overwrite=True,
                      progress=False)
    assert res.paths["table"] == out / "sweep.txt" and again.paths["figure"] == out / "sweep.png"
    manifest = pio.read_manifest(out)
    assert sorted(manifest["files"]) == ["sweep.json", "sweep.png", "sweep.txt"]
    assert manifest["kept"] == ["unmix"] and (out / "unmix" / "summary.json").exists()


def test_an_interrupt_that_a_library_turned_into_its_own_error_still_ends_as_interrupted(
        tmp_path):
    """A SIGINT whose KeyboardInterrupt was raised inside a C callback comes out as that
    library's error (h5py raises TypeError): the folder is left alone and the run ends with
    KeyboardInterrupt, the library's error kept as its context."""
    out = tmp_path / "R"
    write_set(out, {"a.txt": "old"})
    before = snapshot(out)
    with pytest.raises(KeyboardInterrupt) as info, pio.ResultsFolder(out, overwrite=True) as res:
        (res.path / "a.txt").write_text("new")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            raise TypeError("Operation not defined for data type class") from None
    assert isinstance(info.value.__context__, TypeError)
    assert snapshot(out) == before
    assert siblings(out) == []
    assert any("was left as it was" in n for n in info.value.__notes__)
