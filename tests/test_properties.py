"""Property-based tests (hypothesis) of the engine and the PSNMF estimator.

For any input that passes validation - any shape, any integer dtype, sparse data, all-zero
pixels and channels, one count in the whole cube, one pixel holding everything, counts up to
the uint32 range - the results are finite, non-negative, on the simplex where they should be,
the simplex EM loss never increases, and two fits with the same seed are bit-identical.

The examples are derandomised (the same ones on every run) so the tests are deterministic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from psnmf import PSNMF, poisson_nmf, standard_nmf

SETTINGS = dict(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = ("uint8", "uint16", "uint32", "int64", "float64")
PATTERNS = ("poisson", "sparse", "zero_rows_cols", "one_count", "one_pixel", "huge")


def make_counts(shape: tuple[int, ...], dtype: str, pattern: str, seed: int) -> np.ndarray:
    """Counts of ``shape`` (last axis: channels) in ``dtype`` following a value ``pattern``."""
    rng = np.random.default_rng(seed)
    n_max = min(np.iinfo(dtype).max, 2**32 - 1) if dtype != "float64" else 2**32 - 1
    if pattern == "poisson":
        X = rng.poisson(rng.uniform(0.5, 30.0), size=shape)
    elif pattern == "sparse":
        X = rng.poisson(0.05, size=shape)
    elif pattern == "zero_rows_cols":
        X = rng.poisson(5.0, size=shape)
        flat = X.reshape(-1, shape[-1])
        flat[rng.random(flat.shape[0]) < 0.4] = 0  # empty pixels
        flat[:, rng.random(flat.shape[1]) < 0.4] = 0  # channels that are always zero
    elif pattern == "one_count":
        X = np.zeros(shape, dtype=np.int64)
        X.reshape(-1)[rng.integers(X.size)] = 1
    elif pattern == "one_pixel":
        X = np.zeros(shape, dtype=np.int64)
        flat = X.reshape(-1, shape[-1])
        flat[rng.integers(flat.shape[0])] = rng.integers(0, 50, size=shape[-1])
        flat[rng.integers(flat.shape[0]), rng.integers(shape[-1])] += 1
    elif pattern == "huge":
        X = rng.integers(0, n_max, size=shape, endpoint=True, dtype=np.int64)
        X.reshape(-1)[rng.integers(X.size)] = n_max  # the very top of the range
    else:  # pragma: no cover
        raise ValueError(pattern)
    X = np.minimum(X, n_max)
    if X.sum() == 0:  # an all-zero draw (sparse pattern): one count somewhere
        X.reshape(-1)[rng.integers(X.size)] = 1
    return X.astype(dtype)


@st.composite
def engine_cases(draw):
    ny = draw(st.integers(1, 12))
    nx = draw(st.integers(1, 12))
    ne = draw(st.integers(1, 40))
    k = draw(st.integers(1, 4))
    k = min(k, ny * nx, ne)
    dtype = draw(st.sampled_from(DTYPES))
    pattern = draw(st.sampled_from(PATTERNS))
    seed = draw(st.integers(0, 2**32 - 1))
    init = draw(st.sampled_from(("nndsvda", "random")))
    return make_counts((ny * nx, ne), dtype, pattern, seed), k, init, pattern


def _fit(X, k, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # integer-valued data in every dtype: no warning
        return poisson_nmf(X, k, max_iter=150, tol=1e-9, random_state=7, **kwargs)


def _assert_same(r1, r2) -> None:
    for name in ("A", "S", "scale", "loss"):
        a, b = getattr(r1, name), getattr(r2, name)
        assert a.shape == b.shape and np.array_equal(a, b), f"{name} differs between runs"
    assert r1.n_iter == r2.n_iter


def _loss_slack(X: np.ndarray) -> float:
    """Float round-off allowed on the loss: relative to the size of its terms."""
    x = np.asarray(X, dtype=float)
    total = x.sum()
    return 1e-9 * (1.0 + total * (1.0 + np.log1p(x.max())))


@settings(max_examples=60, **SETTINGS)
@given(engine_cases())
def test_simplex_engine_invariants(case):
    X, k, init, _ = case
    res = _fit(X, k, simplex=True, init=init)
    n, ne = X.shape
    assert res.A.shape == (n, k) and res.S.shape == (k, ne)
    for M in (res.A, res.S, res.scale, res.loss):
        assert np.all(np.isfinite(M))
    assert np.all(res.A >= 0) and np.all(res.S >= 0)
    np.testing.assert_allclose(res.A.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(res.S.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(res.scale, np.asarray(X, dtype=float).sum(axis=1), rtol=1e-12)
    # EM never increases the loss (the generalised KL divergence >= 0, up to round-off)
    slack = _loss_slack(X)
    assert np.all(np.diff(res.loss) <= slack), np.diff(res.loss).max()
    assert res.loss[-1] >= -slack
    # the model is consistent: its pixel sums are the pixel counts
    np.testing.assert_allclose(res.model().sum(axis=1), res.scale, rtol=1e-9)
    _assert_same(res, _fit(X, k, simplex=True, init=init))


@settings(max_examples=30, **SETTINGS)
@given(engine_cases())
def test_plain_kl_engine_invariants(case):
    X, k, init, _ = case
    res = _fit(X, k, simplex=False, init=init)
    for M in (res.A, res.S, res.loss):
        assert np.all(np.isfinite(M))
    assert np.all(res.A >= 0) and np.all(res.S >= 0)
    # Lee & Seung's KL multiplicative updates are monotone too
    slack = _loss_slack(X)
    assert np.all(np.diff(res.loss) <= slack), np.diff(res.loss).max()
    assert res.loss[-1] >= -slack
    _assert_same(res, _fit(X, k, simplex=False, init=init))


@settings(max_examples=30, **SETTINGS)
@given(engine_cases())
def test_fixed_spectra_solve_stays_on_the_simplex(case):
    """The stage-2 solve (spectra held fixed) on data with channels the spectra lack."""
    X, k, _, _ = case
    n, ne = X.shape
    rng = np.random.default_rng(ne)
    S = rng.dirichlet(np.ones(ne), size=k)
    res = _fit(X, k, S_init=S, A_init=np.full((n, k), 1.0 / k), update_S=False)
    assert np.all(np.isfinite(res.A)) and np.all(res.A >= 0)
    np.testing.assert_allclose(res.A.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(res.S, S / S.sum(axis=1, keepdims=True))
    assert np.all(np.diff(res.loss) <= _loss_slack(X))


@st.composite
def psnmf_cases(draw):
    ny = draw(st.integers(1, 12))
    nx = draw(st.integers(1, 12))
    ne = draw(st.integers(1, 40))
    b = draw(st.integers(1, max(ny, nx)))
    n_bins = (-(-ny // b)) * (-(-nx // b))
    k = min(draw(st.integers(1, 4)), n_bins, ne)
    dtype = draw(st.sampled_from(DTYPES))
    pattern = draw(st.sampled_from(PATTERNS))
    seed = draw(st.integers(0, 2**32 - 1))
    stage2 = draw(st.sampled_from(("fixed", "free")))
    spectra = draw(st.sampled_from(("nmf", "pure")))
    return make_counts((ny, nx, ne), dtype, pattern, seed), k, b, stage2, spectra


def _psnmf(cube, k, b, stage2, spectra):
    model = PSNMF(
        n_components=k,
        bin_factor=b,
        stage2_spectra=stage2,
        max_iter=80,
        max_iter_full=30,
        tol=1e-9,
        random_state=3,
        spectra=spectra,
        smoothing=None,
        min_cluster=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.fit(cube)


@settings(max_examples=25, **SETTINGS)
@given(psnmf_cases())
def test_psnmf_invariants(case):
    cube, k, b, stage2, spectra = case
    ny, nx, ne = cube.shape
    model = _psnmf(cube, k, b, stage2, spectra)
    assert model.maps_.shape == (ny, nx, k) and model.spectra_.shape == (k, ne)
    for M in (model.maps_, model.spectra_, model.full_spectra_, model.binned_maps_):
        assert np.all(np.isfinite(M)) and np.all(M >= 0)
    np.testing.assert_allclose(model.maps_.sum(axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(model.binned_maps_.sum(axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(model.spectra_.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(model.full_spectra_.sum(axis=1), 1.0, atol=1e-9)
    for stage in ("binned", "full"):
        assert np.all(np.isfinite(model.loss_[stage]))
    assert np.all(np.diff(model.loss_["binned"]) <= _loss_slack(cube))
    den = model.reconstruct()
    assert np.all(np.isfinite(den)) and np.all(den >= 0)
    # the denoised cube keeps every pixel's counts
    np.testing.assert_allclose(
        den.sum(axis=-1), np.asarray(cube, dtype=float).sum(axis=-1), rtol=1e-9, atol=1e-9
    )
    loadings = model.transform(cube)
    assert np.all(np.isfinite(loadings)) and np.all(loadings >= 0)
    again = _psnmf(cube, k, b, stage2, spectra)
    for name in ("maps_", "spectra_", "full_spectra_", "binned_maps_", "scale_"):
        assert np.array_equal(getattr(model, name), getattr(again, name)), name
    for stage in ("binned", "full"):
        assert np.array_equal(model.loss_[stage], again.loss_[stage])


@settings(max_examples=15, **SETTINGS)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.integers(1, 3),
    st.sampled_from(DTYPES),
    st.sampled_from(PATTERNS),
    st.integers(0, 2**32 - 1),
)
def test_standard_nmf_on_line_scans(n, ne, k, dtype, pattern, seed):
    """Standard NMF needs no image: a (pixels, channels) line scan gives (pixels, k) maps."""
    X = make_counts((n, ne), dtype, pattern, seed)
    k = min(k, n, ne)
    res = standard_nmf(X, k, max_iter=100, random_state=0)
    assert res.maps.shape == (n, k) and res.scale.shape == (n,)
    assert np.all(np.isfinite(res.maps)) and np.all(res.maps >= 0)
    np.testing.assert_allclose(res.maps.sum(axis=-1), 1.0, atol=1e-9)
    den = res.reconstruct()
    assert den.shape == X.shape and np.all(np.isfinite(den))


@pytest.mark.parametrize("init", ["nndsvda", "random", "spa"])
@pytest.mark.parametrize(
    "pattern, dtype", [("one_count", "uint8"), ("one_pixel", "uint16"), ("huge", "uint32")]
)
def test_extreme_cubes_named_in_the_issue(pattern, dtype, init):
    """The extreme cases of the issue, with every initialisation, at k=1 (spa needs
    k pixels with counts, so k=1 is the case every init supports)."""
    cube = make_counts((9, 7, 25), dtype, pattern, 0)
    model = PSNMF(1, bin_factor=3, init=init, max_iter=100, max_iter_full=50, random_state=0,
                  spectra="nmf", smoothing=None).fit(cube)
    assert np.all(np.isfinite(model.maps_)) and np.all(model.maps_ >= 0)
    np.testing.assert_allclose(model.maps_.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.spectra_.sum(-1), 1.0, atol=1e-12)


def test_transform_with_counts_in_channels_the_fit_never_saw():
    """Spectra fitted on data with an always-zero channel are exactly zero there; new data
    with (huge) counts in that channel must still give finite loadings on the simplex."""
    rng = np.random.default_rng(0)
    cube = rng.poisson(5, (6, 6, 8)).astype(np.uint32)
    cube[..., 5] = 0
    model = PSNMF(2, bin_factor=2, random_state=0, spectra="nmf", smoothing=None).fit(cube)
    new = cube.copy()
    new[..., 5] = 2**32 - 1
    loadings = model.transform(new)
    assert np.all(np.isfinite(loadings)) and np.all(loadings >= 0)
    np.testing.assert_allclose(loadings.sum(-1), new.reshape(-1, 8).sum(-1, dtype=float))


@pytest.mark.parametrize("count", [3, 2**32 - 1])
def test_engine_fixed_spectra_with_a_zero_channel(count):
    """Fixed spectra that cannot explain counts in a channel: a clear error, never NaN.

    With every spectrum zero where X has counts, the likelihood is -inf for any abundances
    (the simplex EM used to drop those counts, and overflow to NaN near 2**32).
    """
    rng = np.random.default_rng(0)
    X = rng.poisson(5, (30, 6)).astype(float)
    X[:, 5] = count
    S = rng.dirichlet(np.ones(6), size=2)
    S[:, 5] = 0
    S /= S.sum(axis=1, keepdims=True)
    with pytest.raises(ValueError, match=r"S_init is zero .* channel\(s\) \[5\]"):
        poisson_nmf(X, 2, S_init=S, A_init=np.full((30, 2), 0.5), update_S=False)
    floored = S + 1e-12
    res = poisson_nmf(X, 2, S_init=floored, A_init=np.full((30, 2), 0.5), update_S=False)
    assert np.all(np.isfinite(res.A)) and np.all(np.isfinite(res.loss))
    np.testing.assert_allclose(res.A.sum(axis=1), 1.0, atol=1e-9)
