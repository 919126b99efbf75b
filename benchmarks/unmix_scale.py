"""The whole job at the size of real maps: `psnmf unmix` against HyperSpy's usual workflow.

For each size, in one run and on the same file:

* **psnmf**: ``psnmf unmix FILE`` with all its defaults (automatic k and b, pure-pixel
  spectra, TV maps, bootstrap compositions, PCA baseline, report), in a fresh process;
  wall time, peak resident memory (the child's own ``ru_maxrss`` from ``wait4``) and the
  per-stage times that the run records in ``summary.json``.
* **HyperSpy** (the anchor): what a HyperSpy user runs on the same file, in a fresh process:
  ``hs.load``, ``decomposition(normalize_poissonian_noise=True)`` (PCA/SVD), then
  ``decomposition(algorithm='NMF', output_dimension=k)`` and ``get_decomposition_model()``.

Each row prints both and their ratios. The input files are what a microscopist has: an
EDS_TEM spectrum image with an energy axis and elements, written chunked and compressed
(``.zspy``, uint16) from counts simulated directly in sparse form (``speed.sparse_mantle``),
so the generator never holds a dense cube.

A child that runs out of memory is reported, not fatal: both children run under an
address-space limit (``--memory-limit``, default 90 % of the memory available at start),
so a run that does not fit fails inside its own process instead of waking the kernel's
out-of-memory killer.

Usage::

    python benchmarks/unmix_scale.py                 # 128^2, 256^2, 512^2 x 2048 at 120
                                                     # counts/px, and 512^2 x 4096 sparse
    python benchmarks/unmix_scale.py --sizes 128     # one size only
    python benchmarks/unmix_scale.py --sizes 1024 --no-anchor   # 1024^2 x 2048
    python benchmarks/unmix_scale.py --no-anchor     # psnmf only
    python benchmarks/unmix_scale.py --json rows.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
K = 3

#: (name, pixels per side, channels, counts per pixel): the sizes of the scale issue.
CASES = {
    180: ("180x180x1980, 147 counts/px", 180, 1980, 147.0),  # the first goal row
    128: ("128x128x2048", 128, 2048, 120.0),
    256: ("256x256x2048", 256, 2048, 120.0),
    512: ("512x512x2048", 512, 2048, 120.0),
    "sparse": ("512x512x4096 sparse", 512, 4096, 1.2),
    1024: ("1024x1024x2048", 1024, 2048, 120.0),  # not in the default run (about 10 min)
}

_MAKE = r"""
import sys
import dask
import dask.array as da
import numpy as np
sys.path.insert(0, sys.argv[1])
from speed import sparse_mantle
import hyperspy.api as hs

out, n, ne, cpp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
width = 0.01 * 2048 / ne  # 0.2-20.7 keV whatever the channels
X = sparse_mantle((n, n), cpp, n_channels=ne, seed=0, channel_width=width)
band = max(1, (64 * 2**20) // (2 * n * ne))  # rows of ~64 MB of uint16


def rows(y0, y1):
    return X[y0 * n:y1 * n].toarray().astype(np.uint16).reshape(y1 - y0, n, ne)


blocks = [da.from_delayed(dask.delayed(rows)(y, min(n, y + band)),
                          shape=(min(n, y + band) - y, n, ne), dtype=np.uint16)
          for y in range(0, n, band)]
s = hs.signals.Signal1D(da.concatenate(blocks, axis=0)).as_lazy()
s.set_signal_type("EDS_TEM")
ax = s.axes_manager.signal_axes[0]
ax.name, ax.units, ax.offset, ax.scale = "Energy", "keV", 0.2, width
s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
s.add_elements(["Mg", "Si", "Ca", "Fe", "Al", "O"])
s.save(out, overwrite=True, chunks=(band, n, ne))
print(int(X.nnz))
"""

_ANCHOR = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import hyperspy.api as hs
t = {}
t0 = time.perf_counter()
s = hs.load(sys.argv[1])
s.change_dtype("float64")
t["load"] = time.perf_counter() - t0
t0 = time.perf_counter()
s.decomposition(normalize_poissonian_noise=True, print_info=False)
t["pca"] = time.perf_counter() - t0
t0 = time.perf_counter()
s.decomposition(algorithm="NMF", output_dimension=int(sys.argv[2]), print_info=False)
m = s.get_decomposition_model()
t["nmf"] = time.perf_counter() - t0
print(json.dumps(t))
"""


@dataclass
class Run:
    """One child process: wall time, peak memory, exit status, stage times."""

    wall_s: float
    peak_mb: float
    returncode: int
    stages: dict[str, float] = field(default_factory=dict)
    error: str = ""
    chosen: str = ""  #: the k and b psnmf chose

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _limit(n_bytes: int | None):
    if n_bytes is None:
        return None

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (n_bytes, n_bytes))

    return set_limit


def run_child(cmd: list[str], limit: int | None, timeout: float) -> tuple[Run, str]:
    """Run ``cmd`` in a fresh process; its own peak RSS comes from ``wait4``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=_limit(limit))
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    run = Run(wall_s=wall, peak_mb=usage.ru_maxrss / 1024, returncode=proc.returncode)
    if not run.ok:
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
        run.error = " | ".join(tail) or f"exit {proc.returncode}"
        if time.perf_counter() > deadline:
            run.error = f"stopped after the {timeout:.0f} s limit"
    return run, stdout


def make_input(case: tuple[str, int, int, float], folder: Path) -> tuple[Path, int]:
    name, n, ne, cpp = case
    path = folder / f"mantle_{n}x{n}x{ne}_{cpp:g}.zspy"
    out = subprocess.run(
        [sys.executable, "-c", _MAKE, str(HERE), str(path), str(n), str(ne), str(cpp)],
        capture_output=True, text=True, check=True,
    )
    return path, int(out.stdout.strip().splitlines()[-1])


def run_psnmf(path: Path, folder: Path, limit: int | None, timeout: float) -> Run:
    out_dir = folder / (path.stem + "_psnmf")
    exe = Path(sys.executable).with_name("psnmf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "psnmf.cli"]
    run, _ = run_child([*cmd, "unmix", str(path), "-o", str(out_dir), "--overwrite",
                        "--quiet"], limit, timeout)
    summary = out_dir / "summary.json"
    if run.ok and summary.exists():
        data = json.loads(summary.read_text())
        timings = data.get("timings_s", {})
        run.stages = {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}
        par = data.get("parameters", {})
        run.chosen = f"k = {par.get('n_components')}, b = {par.get('bin_factor')}"
    return run


def run_anchor(path: Path, limit: int | None, timeout: float) -> Run:
    run, stdout = run_child([sys.executable, "-c", _ANCHOR, str(path), str(K)], limit,
                            timeout)
    if run.ok:
        run.stages = json.loads(stdout.strip().splitlines()[-1])
    return run


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _fmt(run: Run | None) -> str:
    if run is None:
        return "not run"
    if not run.ok:
        return f"FAILED ({run.error[:70]}) after {run.wall_s:.0f} s, {run.peak_mb:.0f} MB"
    return f"{run.wall_s:7.1f} s  {run.peak_mb / 1024:5.2f} GB"


def folder_bytes(path: Path) -> int:
    """Bytes of the files below ``path`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() \
        else 0


def print_row(name: str, nnz: int, ours: Run, anchor: Run | None,
              sizes: tuple[int, int] = (0, 0)) -> None:
    print(f"\n{name}  ({nnz / 1e6:.1f} M non-zero counts)")
    if sizes[0]:
        print(f"  input file {sizes[0] / 2**20:.1f} MiB, default results folder "
              f"{sizes[1] / 2**20:.1f} MiB ({sizes[1] / sizes[0]:.2f}x the input)")
    print(f"  psnmf unmix (all defaults)   {_fmt(ours)}   {ours.chosen}")
    print(f"  HyperSpy PCA + NMF (k={K})     {_fmt(anchor)}")
    if ours.ok and anchor is not None and anchor.ok:
        print(f"  ratio HyperSpy / psnmf       time {anchor.wall_s / ours.wall_s:5.2f}x   "
              f"memory {anchor.peak_mb / ours.peak_mb:5.2f}x")
    if ours.stages:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in ours.stages.items())
        print(f"  psnmf stages (s): {stages}")
    if anchor is not None and anchor.stages:
        print("  HyperSpy stages (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in anchor.stages.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="128,256,512,sparse",
                   help="comma-separated among 128, 180, 256, 512, sparse, 1024")
    p.add_argument("--no-anchor", action="store_true", help="skip HyperSpy's workflow")
    p.add_argument("--memory-limit", type=float, default=None,
                   help="address-space limit of each child in GB (default 90%% of available)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child")
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    keys = [int(s) if s.isdigit() else s for s in args.sizes.split(",") if s]
    unknown = [k for k in keys if k not in CASES]
    if unknown:
        p.error(f"unknown sizes {unknown}; choose among {list(CASES)}")
    limit = int((args.memory_limit * 2**30) if args.memory_limit else 0.9 * available_bytes())

    sys.path.insert(0, str(HERE))
    from speed import machine

    print("psnmf unmix at the size of real maps")
    print("machine:", machine())
    print(f"memory limit per child: {limit / 2**30:.1f} GB")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key in keys:
            case = CASES[key]
            path, nnz = make_input(case, folder)
            ours = run_psnmf(path, folder, limit, args.timeout)
            results = folder / (path.stem + "_psnmf")
            sizes = (folder_bytes(path), folder_bytes(results))
            anchor = None if args.no_anchor else run_anchor(path, limit, args.timeout)
            print_row(case[0], nnz, ours, anchor, sizes)
            rows.append({"case": case[0], "nnz": nnz, "psnmf": asdict(ours),
                         "hyperspy": None if anchor is None else asdict(anchor),
                         "input_bytes": sizes[0], "results_bytes": sizes[1]})
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(results, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
