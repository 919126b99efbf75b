"""The memory guard of ``unmix``: the limits it sees, its estimate, and its refusal.

* :func:`psnmf._validation.available_memory` honours each limit source (RAM, ``RLIMIT_AS``,
  ``RLIMIT_DATA``, cgroup v2 and v1), each from fake files or a patched rlimit, and a real
  ``ulimit -v`` in a subprocess.
* :func:`psnmf.pipeline.memory.estimate_peak` is within its stated error of the peak
  resident memory measured in a fresh process running a small ``unmix``.
* :func:`psnmf.pipeline.memory.check_unmix_memory` refuses, in a process under a 1.5 GB
  address-space limit and in-process with a patched ``available_memory``, before any heavy
  work, with a message naming the size, the memory needed and available, and the fixes.
* :class:`psnmf.pipeline.progress.Progress` shows the elapsed time and time left of a step.
"""

from __future__ import annotations

import inspect
import io
import json
import resource
import subprocess
import sys
import textwrap
import time

import pytest

from psnmf import _validation
from psnmf.pipeline import memory
from psnmf.pipeline.progress import Progress

GB = 10**9


# ---------------------------------------------------------------------------
# available_memory: each source
# ---------------------------------------------------------------------------
@pytest.fixture
def fake_system(tmp_path, monkeypatch):
    """An empty /proc and cgroup tree, no rlimits: every source says "no limit"."""
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    cg.mkdir()
    monkeypatch.setattr(_validation, "PROC_DIR", str(proc))
    monkeypatch.setattr(_validation, "CGROUP_ROOT", str(cg))
    limits: dict[str, int] = {}
    monkeypatch.setattr(_validation, "_rlimit", limits.get)
    monkeypatch.setitem(sys.modules, "psutil", None)  # no fallback to the real RAM
    return proc, cg, limits


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_nothing_known_means_no_limit(fake_system):
    assert _validation.memory_limits() == {}
    assert _validation.available_memory() == _validation.NO_LIMIT


def test_ram_is_memavailable(fake_system):
    proc, _, _ = fake_system
    _write(proc / "meminfo", "MemTotal: 9000000 kB\nMemAvailable:  4000000 kB\n")
    assert _validation.memory_limits() == {"ram": 4000000 * 1024}
    assert _validation.available_memory() == 4000000 * 1024


def test_rlimit_as_minus_address_space_in_use(fake_system):
    proc, _, limits = fake_system
    _write(proc / "meminfo", "MemAvailable: 20000000 kB\n")
    _write(proc / "self" / "status", "VmSize:  700000 kB\nVmData:  300000 kB\n")
    limits["AS"] = 3 * GB
    assert _validation.memory_limits()["rlimit_as"] == 3 * GB - 700000 * 1024
    assert _validation.available_memory() == 3 * GB - 700000 * 1024


def test_rlimit_data_minus_data_in_use(fake_system):
    proc, _, limits = fake_system
    _write(proc / "self" / "status", "VmSize:  700000 kB\nVmData:  300000 kB\n")
    limits["DATA"] = 2 * GB
    limits["AS"] = 4 * GB
    assert _validation.memory_limits() == {"rlimit_as": 4 * GB - 700000 * 1024,
                                           "rlimit_data": 2 * GB - 300000 * 1024}
    assert _validation.available_memory() == 2 * GB - 300000 * 1024


def test_cgroup_v2_max_minus_current_over_the_hierarchy(fake_system):
    proc, cg, _ = fake_system
    _write(proc / "meminfo", "MemAvailable: 20000000 kB\n")
    _write(proc / "self" / "cgroup", "0::/user.slice/job\n")
    job, parent = cg / "user.slice" / "job", cg / "user.slice"
    _write(job / "memory.max", "max\n")  # no limit on the job itself
    _write(job / "memory.current", "123\n")
    _write(parent / "memory.max", f"{2 * GB}\n")
    _write(parent / "memory.current", f"{GB // 2}\n")
    _write(parent / "memory.stat", f"anon 1\ninactive_file {GB // 10}\n")
    assert _validation.memory_limits()["cgroup"] == 2 * GB - (GB // 2 - GB // 10)
    assert _validation.available_memory() == 2 * GB - (GB // 2 - GB // 10)
    _write(job / "memory.max", f"{GB}\n")  # a tighter limit below wins
    assert _validation.available_memory() == GB - 123


def test_cgroup_v1_limit_minus_usage(fake_system):
    proc, cg, _ = fake_system
    _write(proc / "self" / "cgroup", "5:devices:/\n4:memory:/docker/abc\n0::/\n")
    d = cg / "memory" / "docker" / "abc"
    _write(d / "memory.limit_in_bytes", f"{3 * GB}\n")
    _write(d / "memory.usage_in_bytes", f"{GB}\n")
    _write(d / "memory.stat", "total_inactive_file 0\n")
    assert _validation.memory_limits() == {"cgroup": 2 * GB}
    # v1 writes "unlimited" as a huge number
    _write(d / "memory.limit_in_bytes", "9223372036854771712\n")
    assert _validation.memory_limits() == {}


def test_cgroup_path_of_the_host_falls_back_to_the_mount_root(fake_system):
    proc, cg, _ = fake_system
    _write(proc / "self" / "cgroup", "0::/not/mounted/here\n")
    _write(cg / "memory.max", f"{GB}\n")
    _write(cg / "memory.current", "0\n")
    assert _validation.available_memory() == GB


def test_unreadable_values_are_no_limit(fake_system):
    proc, cg, _ = fake_system
    _write(proc / "meminfo", "MemAvailable: lots\n")
    _write(proc / "self" / "cgroup", "garbage\n0::/\n")
    _write(cg / "memory.max", "not a number\n")
    assert _validation.available_memory() == _validation.NO_LIMIT


def _python(code: str, as_limit: int | None = None, timeout: float = 120):
    def limit():  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if as_limit else None)


def test_real_address_space_limit_is_seen():
    proc = _python("""
        from psnmf import _validation
        print(_validation.memory_limits().get("rlimit_as", -1),
              _validation.available_memory())
    """, as_limit=int(1.5 * GB))
    assert proc.returncode == 0, proc.stderr
    as_left, avail = map(int, proc.stdout.split())
    assert 0 < as_left < 1.5 * GB and avail == min(as_left, avail)


# ---------------------------------------------------------------------------
# the estimate and the guard
# ---------------------------------------------------------------------------
def test_model_reproduces_its_measurements():
    model, err = memory.fit_model()
    assert err <= memory.PEAK_ERROR + 1e-9
    for name, coef in memory.MODEL.items():
        assert coef == pytest.approx(model[name], rel=1e-3, abs=1.0)
    for m in memory.MEASUREMENTS.values():
        ny, nx, ne = m["shape"]
        est = memory.estimate_peak((ny, nx), ne, m["nnz"], baseline=m["baseline"])
        true = max(v[0] for v in m["stages"].values())
        assert abs(est.peak - true) <= memory.PEAK_ERROR * true + 1


def test_estimate_is_within_its_error_of_a_fresh_run(tmp_path):
    """A 48 x 48 x 1980 unmix (a size not in the fit; given k and b, no bootstrap, nothing
    written) in a fresh process: its peak resident size (VmHWM, the largest over its
    stages) against the estimate for that size and those stages."""
    import warnings

    from psnmf.simulate import mantle

    path = tmp_path / "small.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mantle("medium", seed=0, shape=(48, 48)).to_signal().save(path)
    # the first run compiles the Numba kernels into their cache (about 80 MB more); the
    # model was measured with the cache warm, so the second run is the one compared
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-W", "ignore", "-m", "psnmf.pipeline.memory", "measure",
             str(path), json.dumps({"n_components": 3, "bin_factor": 4, "n_boot": 0})],
            capture_output=True, text=True, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(got["stages"]) == {"load", "pca", "psnmf", "heldout", "elements"}
    ny, nx, ne = got["shape"]
    est = memory.estimate_peak((ny, nx), ne, got["nnz"], choose=False, n_boot=0,
                               output=False, baseline=got["baseline"])
    assert abs(est.peak - got["peak"]) <= memory.PEAK_ERROR * got["peak"], (est, got)


def test_guard_refuses_under_an_address_space_limit_before_heavy_work():
    """Under ``ulimit -v`` 1.5 GB a 512 x 512 x 2048 run at about 100 counts per pixel is
    refused in well under a second of work, with the size, the memory needed and
    available, and the CLI fixes."""
    proc = _python("""
        import time
        from psnmf.pipeline.memory import check_unmix_memory
        from psnmf._validation import InsufficientMemoryError
        check_unmix_memory((32, 32), 1980, 50_000, what="'small.hspy'")  # fits
        t0 = time.perf_counter()
        try:
            check_unmix_memory((512, 512), 2048, 27_000_000, what="'map.hspy'")
        except InsufficientMemoryError as exc:
            print(f"{time.perf_counter() - t0:.3f}")
            print(exc)
        else:
            print("not refused")
    """, as_limit=int(1.5 * GB))
    assert proc.returncode == 0, proc.stderr
    seconds, message = proc.stdout.split("\n", 1)
    assert float(seconds) < 1.0
    for part in ("'map.hspy'", "512 x 512 pixels x 2048 channels", "needs about",
                 "GiB is available", "address-space limit", "--energy-range",
                 "binned", "lazy"):
        assert part in message, (part, message)


def test_guard_in_process_with_little_memory(monkeypatch):
    monkeypatch.setattr(_validation, "available_memory", lambda: 600 * 2**20)
    monkeypatch.setattr(_validation, "memory_limits", lambda: {"cgroup": 600 * 2**20})
    with pytest.raises(_validation.InsufficientMemoryError) as info:
        memory.check_unmix_memory((256, 256), 1980, 4_800_000, what="'scan.bcf'")
    msg = str(info.value)
    est = memory.estimate_peak((256, 256), 1980, 4_800_000)
    assert isinstance(info.value, MemoryError)
    assert f"needs about {est.need / 2**30:.2f} GiB" in msg
    assert "0.59 GiB is available (limited by the container's memory limit)" in msg
    assert "most in " + memory.STAGE_LABELS[est.largest] in msg
    assert "--energy-range" in msg and "nothing was computed" in msg
    # a fix the message proposes fits
    small = memory.check_unmix_memory((32, 32), 1980, 70_000)
    assert small.need < 0.8 * 600 * 2**20


def test_dense_cubes_count_only_when_written(monkeypatch):
    """``write_denoised`` adds the dense cubes' writing to the save stage, and a refusal
    caused by them proposes leaving them out."""
    plain = memory.estimate_peak((512, 512), 2048, 16_000_000)
    dense = memory.estimate_peak((512, 512), 2048, 16_000_000, write_denoised=True)
    cube = 512 * 512 * 2048 * 8
    assert dense.stages["save"] - plain.stages["save"] == int(memory.DENSE_WRITE[0] * cube)
    assert {s: v for s, v in dense.stages.items() if s != "save"} == {
        s: v for s, v in plain.stages.items() if s != "save"}
    monkeypatch.setattr(_validation, "available_memory", lambda: 2**30)
    with pytest.raises(_validation.InsufficientMemoryError, match="without --write-denoised"):
        memory.check_unmix_memory((512, 512), 2048, 16_000_000, write_denoised=True)


def test_stages_left_out_do_not_count():
    full = memory.estimate_peak((64, 64), 1980, 300_000)
    bare = memory.estimate_peak((64, 64), 1980, 300_000, choose=False, n_boot=0,
                                output=False)
    assert set(full.stages) == set(memory.STAGES)
    assert set(bare.stages) == {"load", "pca", "psnmf", "heldout", "elements"}
    assert bare.peak <= full.peak
    # grows with the counts: the counts and their two halves hold >= 36 bytes a non-zero
    big = memory.estimate_peak((64, 64), 1980, 3_000_000)
    assert big.need - full.need > 36 * (3_000_000 - 300_000)


def test_unmix_refuses_under_a_limit_when_wired(tmp_path):
    """End to end: ``unmix`` on 180 x 180 x 1980 under ``ulimit -v`` 2 GB stops after
    loading with the guard's message (skipped until ``unmix`` calls the guard)."""
    from psnmf.pipeline import unmix as unmix_fn

    module = sys.modules[unmix_fn.__module__]
    if "check_unmix_memory" not in inspect.getsource(module):
        pytest.skip("psnmf.pipeline.unmix does not call check_unmix_memory yet")
    limit = 2 * GB
    # after loading, the process holds about 1.2 GB of address space
    if memory.estimate_peak((180, 180), 1980, 2_300_000).need < 0.8 * (limit - 1.2 * GB):
        pytest.skip("the model says this run fits under the limit")
    from psnmf.simulate import mantle

    path = tmp_path / "map.hspy"
    mantle("medium", seed=0, shape=(180, 180)).to_signal().save(path)
    proc = _python(f"""
        import time, warnings
        warnings.simplefilter("ignore")
        from psnmf._validation import InsufficientMemoryError
        from psnmf.pipeline import unmix
        t0 = time.perf_counter()
        try:
            unmix(r"{path}", progress=False)
        except InsufficientMemoryError as exc:
            print(f"refused after {{time.perf_counter() - t0:.1f}} s:", exc)
    """, as_limit=limit, timeout=300)
    assert "refused after" in proc.stdout and "needs about" in proc.stdout, proc.stderr[-2000:]
    assert float(proc.stdout.split("refused after ")[1].split()[0]) < 30


# ---------------------------------------------------------------------------
# progress with time left
# ---------------------------------------------------------------------------
def test_progress_shows_elapsed_and_time_left():
    stream = io.StringIO()
    prog = Progress(enabled=True, stream=stream)
    prog.refresh_s = 0.05
    prog.expect({"fit": 100.0})
    prog.start(2, "psnmf unmix")
    with prog.step("fit", "PSNMF"):
        time.sleep(0.4)
    with prog.step("other", "other"):
        time.sleep(0.3)
    prog.close()
    text = stream.getvalue()
    assert "0 s of ~1 min 40 s, ~1 min 40 s left" in text
    assert "PSNMF" in text
    assert prog._ticker is None and set(prog.timings) == {"fit", "other"}


def test_time_left_follows_how_fast_the_run_goes():
    """A step that took three times its expectation makes the steps after it expected
    slower (shrunk towards the model by ``prior_s``); the run's time left sums the steps
    still to come."""
    prog = Progress(enabled=False)
    prog.expect({"load": 10.0, "fit": 40.0, "report": 10.0})
    prog.timings["load"] = 30.0
    assert prog.speed() == pytest.approx(40.0 / 20.0)
    prog._current = ("fit", time.perf_counter())
    assert prog.status() == "0 s of ~1 min 20 s, ~1 min 20 s left; run ~1 min 40 s left"
    prog.timings["load"] = 1000.0  # kept within 4x
    assert prog.speed() == 4.0
    prog.timings["load"] = 30.0
    prog.skip("report", "never expected")  # a stage with nothing to do: no longer counted
    assert prog.status() == "0 s of ~1 min 20 s, ~1 min 20 s left"


def test_progress_counter_shows_the_units_done():
    stream = io.StringIO()
    prog = Progress(enabled=True, stream=stream)
    prog.start(1, "psnmf unmix")
    with prog.step("composition", "compositions"), \
            prog.counter(20, "bootstrap replicates") as advance:
        for _ in range(5):
            time.sleep(0.12)  # tqdm redraws at most every 0.1 s
            advance(1)
    prog.close()
    assert "bootstrap replicates" in stream.getvalue() and "5/20" in stream.getvalue()
    quiet = Progress(enabled=False)
    with quiet.counter(3, "x") as advance:
        advance(1)  # nothing shown, nothing raised


def test_time_model_reproduces_its_measurements():
    """The time model is the fit of its measurements; each measured run's whole time is
    predicted within 50 % by the model fitted to the other runs."""
    model = memory.fit_time_model()
    assert set(model) == set(memory.TIME_MODEL)
    for name, coef in memory.TIME_MODEL.items():
        assert coef == pytest.approx(model[name], rel=1e-3, abs=1e-3)
    assert all(abs(err) < 0.5 for err in memory.time_error().values())


def test_expected_time_follows_pixels_counts_and_settings():
    base = memory.estimate_time((256, 256), 2048, 4_000_000)
    assert set(base) == set(memory.STAGES)
    bare = memory.estimate_time((256, 256), 2048, 4_000_000, choose=False, n_boot=0,
                                output=False)
    assert set(bare) == {"load", "pca", "psnmf", "heldout", "elements"}
    # the dense cube does not count, the pixels and the counts do
    assert memory.estimate_time((256, 256), 4096, 4_000_000) == base
    bigger = memory.estimate_time((512, 512), 2048, 16_000_000)
    assert all(bigger[s] >= base[s] for s in base) and sum(bigger.values()) > sum(
        base.values())
    # the bootstrap: what the stopping rule typically draws, at most n_boot
    two = memory.estimate_time((256, 256), 2048, 4_000_000, n_boot=2)
    assert two["composition"] == pytest.approx(
        base["composition"] * 2 / memory.typical_replicates())
    dense = memory.estimate_time((256, 256), 2048, 4_000_000, write_denoised=True)
    assert dense["save"] > base["save"]


def test_quiet_progress_writes_nothing_and_starts_no_thread():
    stream = io.StringIO()
    prog = Progress(enabled=False, stream=stream)
    prog.start(3, "run")
    with prog.step("a", "a"):
        pass
    prog.close()
    assert stream.getvalue() == "" and prog._ticker is None


def test_progress_records_peak_memory_per_step():
    """In a fresh process: in a long one, freed heap memory is reused and RSS need not grow."""
    code = (
        "import numpy as np\n"
        "from psnmf.pipeline.progress import Progress\n"
        "prog = Progress(enabled=False)\n"
        "prog.track_memory = True\n"
        "with prog.step('alloc', 'alloc'):\n"
        "    a = np.ones(40 * 2**20 // 8)\n"
        "    del a\n"
        "with prog.step('none', 'none'):\n"
        "    pass\n"
        "print(prog.peaks['alloc'] - prog.resident['alloc'],"
        " prog.peaks['none'] - prog.resident['none'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    grew, idle = (int(v) for v in out.stdout.split())
    assert grew > 35 * 2**20
    assert idle < 20 * 2**20


def test_an_npz_declaring_more_than_memory_is_refused_as_too_large(tmp_path):
    """The header of the counts (2 TiB declared, no data behind it) is enough to refuse the
    file for its size, before anything is decompressed, and not as a corrupt file."""
    import zipfile

    import numpy as np

    from psnmf import io as pio

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<u2", "fortran_order": False, "shape": (16384, 16384, 4096)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("counts.npy", header.getvalue())
    with pytest.raises(_validation.InsufficientMemoryError) as info:
        pio.load_spectrum_image(path)
    msg = str(info.value)
    assert "(16384, 16384, 4096) uint16" in msg and "needs about 2.05e+03 GiB" in msg
    assert "corrupt" not in msg
