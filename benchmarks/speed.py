"""Speed and memory of psnmf against scikit-learn and HyperSpy, all measured in one run.

Run ``python benchmarks/speed.py`` (about 10 minutes on 2 cores) or ``--quick`` (about 2).

Tables printed:

1. Poisson (KL) NMF at equal iterations on the paper's 180 x 180 x 1980 mantle cube at 147
   counts per pixel: psnmf's count-sparse kernel (``poisson_nmf(simplex=False)``) against
   scikit-learn ``NMF(beta_loss='kullback-leibler', solver='mu')`` on the dense cube (what
   HyperSpy users run) and on the same data as a CSR matrix, all from the same initial
   ``W, H`` and with ``tol=0``; the largest relative difference of the factors is printed.
2. HyperSpy's default ``decomposition(algorithm='NMF')`` against psnmf's standard NMF and
   PSNMF on the same cube (each to its own convergence).
3. Full PSNMF (the paper's configuration ``spectra="nmf", smoothing=None``; ``bin_factor=4``,
   3 phases) on 128^2, 256^2 and 512^2 pixels x 2048 channels
   at 120 counts per pixel: wall time and peak resident memory, each in a fresh process
   (the counts are simulated directly in sparse form and loaded from a ``.npz``).
4. Scaling of PSNMF with the counts per pixel at 256^2 x 2048.
5. The ratio pass of the multiplicative updates, k = 3: the four-lane kernel psnmf runs
   (``kernels.ratio_numerators``) against the generic loop over ``k`` on the same arrays,
   serial and on all cores, at the k search's size (180 x 180 binned 8 x 8) and at full
   resolution (512 x 512 x 2048, 120 counts per pixel); the results are checked
   bit-identical. ``--lanes`` prints this table only (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
N_CHANNELS = 2048
K = 3


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
def sparse_mantle(
    shape: tuple[int, int], counts_per_pixel: float, n_channels: int = N_CHANNELS, seed: int = 0,
    channel_width: float = 0.01,
) -> sp.csr_matrix:
    """Mantle-like counts simulated directly as a CSR matrix (never a dense cube).

    Each pixel draws its total ``N ~ Poisson(n)``, then every count picks a phase from the
    pixel's abundances and a channel from that phase's spectrum: the channel counts are then
    independent ``Poisson(n * (a S)_j)``, exactly as in :func:`psnmf.simulate.simulate`.
    The energy axis starts at 0.2 keV in channels of ``channel_width`` keV: a signal made
    from the counts needs the same calibration for its lines to sit at their energies.
    """
    from psnmf.physics import EDXModel
    from psnmf.simulate.maps import from_recipe
    from psnmf.simulate.scenarios import load_sample

    spec = load_sample("mantle")
    micro = from_recipe(dict(spec["microstructure"]), shape)
    model = EDXModel.for_axis(0.2, channel_width, n_channels)
    spectra = np.stack([model.phase_spectrum(spec["phases"][p]) for p in micro.phase_names])
    spectra /= spectra.sum(axis=1, keepdims=True)
    ny, nx = shape
    maps = micro.maps.reshape(ny * nx, -1)
    rng = np.random.default_rng(seed)
    thick = np.ones(ny * nx) if micro.thickness is None else micro.thickness.reshape(-1)
    totals = rng.poisson(counts_per_pixel * thick / thick.mean())
    pix = np.repeat(np.arange(ny * nx, dtype=np.int64), totals)
    cum = np.cumsum(maps, axis=1)
    phase = (rng.random(pix.size)[:, None] * cum[pix, -1:] > cum[pix]).sum(axis=1)
    phase = np.minimum(phase, maps.shape[1] - 1)
    chan = np.empty(pix.size, dtype=np.int64)
    for q in range(spectra.shape[0]):
        sel = phase == q
        cdf = np.cumsum(spectra[q])
        chan[sel] = np.minimum(np.searchsorted(cdf, rng.random(int(sel.sum())) * cdf[-1]),
                               n_channels - 1)
    del phase
    key = pix * n_channels + chan
    del pix, chan
    key.sort()
    uniq, cnt = np.unique(key, return_counts=True)
    del key
    rows, cols = np.divmod(uniq, n_channels)
    indptr = np.zeros(ny * nx + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=ny * nx), out=indptr[1:])
    return sp.csr_matrix(
        (cnt.astype(np.float64), cols.astype(np.int32), indptr), shape=(ny * nx, n_channels)
    )


# ----------------------------------------------------------------------------------------
# 1-2: scikit-learn and HyperSpy on the 180 x 180 x 1980 cube
# ----------------------------------------------------------------------------------------
def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_sklearn(n_iter: int) -> list[tuple[str, float, str]]:
    """psnmf KL-MU vs scikit-learn KL-MU at equal iterations from the same init."""
    import warnings

    from sklearn.decomposition import NMF

    import psnmf.simulate as simulate
    from psnmf import poisson_nmf
    from psnmf.engine.poisson_nmf import nndsvd_init

    ds = simulate.mantle("medium", seed=0)
    dense = ds.counts.reshape(-1, ds.counts.shape[-1]).astype(np.float64)
    csr = sp.csr_matrix(dense)
    W0, H0 = nndsvd_init(csr, K, random_state=0)
    poisson_nmf(csr[:50], K, simplex=False, A_init=W0[:50], S_init=H0, max_iter=2, tol=0)

    t_ps, res = _timed(lambda: poisson_nmf(
        csr, K, simplex=False, A_init=W0, S_init=H0, max_iter=n_iter, tol=0
    ))

    def run_sklearn(X):
        est = NMF(K, beta_loss="kullback-leibler", solver="mu", init="custom", tol=0,
                  max_iter=n_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            W = est.fit_transform(X, W=W0.copy(), H=H0.copy())
        return W, est.components_

    t_dense, (Wd, Hd) = _timed(lambda: run_sklearn(dense))
    t_csr, (Wc, Hc) = _timed(lambda: run_sklearn(csr))

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    diff = max(rel(res.A, Wd), rel(res.S, Hd))
    diff_c = max(rel(res.A, Wc), rel(res.S, Hc))
    nnz = f"{csr.nnz / 1e6:.1f}M non-zeros of {dense.size / 1e6:.0f}M"
    return [
        (f"psnmf poisson_nmf(simplex=False), {n_iter} it", t_ps, nnz),
        (f"sklearn NMF KL-MU dense float64, {n_iter} it", t_dense,
         f"{t_dense / t_ps:.1f}x psnmf; max rel diff {diff:.1e}"),
        (f"sklearn NMF KL-MU CSR input, {n_iter} it", t_csr,
         f"{t_csr / t_ps:.1f}x psnmf; max rel diff {diff_c:.1e}"),
    ]


def bench_hyperspy(quick: bool) -> list[tuple[str, float, str]]:
    """HyperSpy's default NMF decomposition against psnmf's NMF and PSNMF."""
    import warnings

    import hyperspy.api as hs

    import psnmf.simulate as simulate
    from psnmf import PSNMF, poisson_nmf

    ds = simulate.mantle("medium", seed=0)
    rows = []
    t_std, res = _timed(lambda: poisson_nmf(ds.counts.reshape(-1, ds.counts.shape[-1]), K,
                                            max_iter=2000, tol=1e-7, random_state=0))
    t_ps, _ = _timed(lambda: PSNMF(K, 4, spectra="nmf", smoothing=None,
                                    random_state=0).fit(ds.counts))
    if not quick:
        s = hs.signals.Signal1D(ds.counts.astype(np.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_hs, _ = _timed(lambda: s.decomposition(algorithm="NMF", output_dimension=K,
                                                     print_info=False))
        rows.append(("HyperSpy decomposition(algorithm='NMF')", t_hs,
                     "scikit-learn NMF defaults, dense cube"))
    else:
        t_hs = float("nan")
    rows.append((f"psnmf standard NMF (simplex EM, {res.n_iter} it)", t_std,
                 f"HyperSpy / psnmf = {t_hs / t_std:.1f}x"))
    rows.append(("psnmf PSNMF b=4", t_ps, f"HyperSpy / PSNMF = {t_hs / t_ps:.1f}x"))
    return rows


# ----------------------------------------------------------------------------------------
# 3-4: PSNMF wall time and peak memory in a fresh process per size
# ----------------------------------------------------------------------------------------
# Peak RSS from VmHWM (this process image only): getrusage's ru_maxrss survives exec on
# Linux and would report the parent's peak.
_CHILD = r"""
import json, resource, sys, time
import numpy as np, scipy.sparse as sp
from psnmf import PSNMF

def hwm_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

path, ny, nx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = sp.load_npz(path).tocsr()
base = hwm_kb()
t0 = time.perf_counter()
m = PSNMF(3, 4, spectra="nmf", smoothing=None, random_state=0, image_shape=(ny, nx)).fit(X)
wall = time.perf_counter() - t0
peak = hwm_kb()
print(json.dumps({"wall": wall, "peak_mb": peak / 1024, "base_mb": base / 1024,
                  "n_iter": m.n_iter_, "nnz": int(X.nnz)}))
"""


def run_psnmf_child(X: sp.csr_matrix, shape: tuple[int, int], tmp: Path) -> dict:
    path = tmp / f"counts_{shape[0]}x{shape[1]}.npz"
    sp.save_npz(path, X, compressed=False)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(shape[0]), str(shape[1])],
        capture_output=True, text=True, check=True,
    )
    path.unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_jit() -> None:
    """Compile (or load from Numba's cache) the kernels before any timing."""
    subprocess.run(
        [sys.executable, "-c",
         "import numpy as np; from psnmf import PSNMF; rng=np.random.default_rng(0);"
         "PSNMF(2, 2, spectra='nmf', smoothing=None, random_state=0)"
         ".fit(rng.poisson(5, size=(8, 8, 20)))"],
        check=True,
    )


# ----------------------------------------------------------------------------------------
def machine() -> str:
    """Cores, CPU model, OS, Python and the load average now (1, 5 and 15 min)."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load avg (1/5/15 min) " + " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        load = ""
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, {load}\n  packages: {packages()}")


#: The packages whose versions decide the kernels' speed (Numba's compiler, the sparse and
#: dense arithmetic) and the anchor's (HyperSpy, scikit-learn).
TIMED_PACKAGES = ("numba", "llvmlite", "numpy", "scipy", "scikit-learn", "hyperspy")


def packages() -> str:
    """Versions of :data:`TIMED_PACKAGES` and the CPU Numba compiles for: the same code
    ran twice as slow in a venv rebuilt on another day, with HyperSpy's time unchanged,
    so every timing names them."""
    out = []
    for name in TIMED_PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} absent")
    try:
        import llvmlite.binding as llvm

        out.append(f"Numba target {llvm.get_host_cpu_name()}")
    except ImportError:
        pass
    return ", ".join(out)


def print_table(title: str, rows: list[tuple[str, float, str]], unit: str = "s") -> None:
    print(f"\n{title}")
    w = max(len(r[0]) for r in rows)
    for name, t, note in rows:
        print(f"  {name:<{w}}  {t:8.2f} {unit:<2}  {note}")


LANES_TITLE = "5. Ratio pass, k = 3, milliseconds per pass (best of several)"


def bench_lanes() -> list[tuple[str, float, str]]:
    """Table 5: milliseconds per ratio pass, the generic loop over ``k`` as the anchor."""
    from psnmf.engine.binning import bin_counts

    binned = bin_counts(sparse_mantle((180, 180), 147.0, n_channels=1980), (180, 180), 8)
    rows = _lanes_rows("180x180x1980 binned 8x8, 147 counts/px", binned)
    return rows + _lanes_rows("512x512x2048, 120 counts/px", sparse_mantle((512, 512), 120.0))


def _lanes_rows(name: str, X: sp.csr_matrix) -> list[tuple[str, float, str]]:
    from psnmf.engine import _kernels as kernels

    n, ne = X.shape
    rng = np.random.default_rng(0)
    A, S = rng.dirichlet(np.ones(K), n), rng.dirichlet(np.ones(ne), K)
    reps = max(3, int(3e7 // X.nnz))
    rows = []
    for label, variant in (("serial", 1), ("all cores", 0)):
        bufs = (np.empty((n, K)), np.empty((kernels.N_CHUNKS, ne, K)),
                np.empty(kernels.N_CHUNKS))
        generic = partial(kernels._RATIO[variant], X.indptr, X.indices, X.data, A,
                          np.ascontiguousarray(S.T), *bufs, True, True, False, kernels.TINY)
        ws = kernels.RatioWorkspace(n, ne, K)
        A4, St4 = ws.factors(A, S)
        lanes = partial(kernels._RATIO_LANES[variant], X.indptr, X.indices, X.data, A4, St4,
                        ws.num_A, ws.parts, ws.ll_parts, True, True, False, kernels.TINY)
        generic(), lanes()
        same = (np.array_equal(bufs[0], ws.num_A[:, :K])
                and np.array_equal(bufs[1], ws.parts[:, :, :K]))
        t_gen = min(_timed(generic)[0] for _ in range(reps))
        t_lanes = min(_timed(lanes)[0] for _ in range(reps))
        rows.append((f"{name}, {label}, generic", 1e3 * t_gen, f"nnz {X.nnz / 1e6:5.2f}M"))
        rows.append((f"{name}, {label}, four lanes", 1e3 * t_lanes,
                     f"{t_gen / t_lanes:4.2f}x faster, bit-identical: {same}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short version (~2 min)")
    parser.add_argument("--lanes", action="store_true", help="table 5 only (~1 min)")
    args = parser.parse_args(argv)
    quick = args.quick

    print("psnmf speed benchmark" + (" (quick)" if quick else ""))
    print("machine:", machine())
    warm_jit()
    if args.lanes:
        print_table(LANES_TITLE, bench_lanes(), unit="ms")
        return 0

    print_table("1. Poisson/KL NMF at equal iterations, mantle 180x180x1980, 147 counts/px",
                bench_sklearn(20 if quick else 100))
    print_table("2. HyperSpy default NMF vs psnmf, same cube", bench_hyperspy(quick))

    sizes = [128, 256] if quick else [128, 256, 512]
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for n in sizes:
            X = sparse_mantle((n, n), 120.0)
            r = run_psnmf_child(X, (n, n), tmp)
            del X
            goal = ""
            if n == 512:
                ok = r["wall"] < 60 and r["peak_mb"] < 2048
                goal = f"  goal <60 s, <2048 MB: {'met' if ok else 'NOT met'}"
            rows.append((f"PSNMF {n}x{n}x{N_CHANNELS}, 120 counts/px", r["wall"],
                         f"peak RSS {r['peak_mb']:6.0f} MB (after load {r['base_mb']:.0f})"
                         f"  nnz {r['nnz'] / 1e6:5.1f}M  iters {r['n_iter']}{goal}"))
        print_table("3. PSNMF b=4, k=3, wall time and peak memory (fresh process each)", rows)

        rows = []
        n = 128 if quick else 256
        counts = [30, 120, 480] if not quick else [30, 120]
        base_t = None
        for c in counts:
            X = sparse_mantle((n, n), float(c))
            r = run_psnmf_child(X, (n, n), tmp)
            base_t = base_t or r["wall"]
            rows.append((f"PSNMF {n}x{n}x{N_CHANNELS}, {c} counts/px", r["wall"],
                         f"{r['wall'] / base_t:4.2f}x  nnz {r['nnz'] / 1e6:5.2f}M  "
                         f"peak RSS {r['peak_mb']:.0f} MB  iters {r['n_iter']}"))
        print_table("4. Scaling with counts per pixel", rows)
    print_table(LANES_TITLE, bench_lanes(), unit="ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
