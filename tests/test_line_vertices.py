"""Never-pure vertices extrapolated by element lines: psnmf.engine.line_vertices and
PSNMF(never_pure='lines' / 'auto'; the default 'keep' leaves them)."""

from __future__ import annotations

import numpy as np
import pytest

from psnmf import PSNMF
from psnmf.engine.line_vertices import (
    extrapolate_vertices,
    line_basis,
    line_coefficients,
    mixture_plateau,
    step_supported,
)
from psnmf.metrics import (
    compare_to_truth,
    match_components,
    oracle_limits,
    oracle_spectra,
    spectral_angle,
)
from psnmf.physics import EDXModel
from psnmf.simulate import sample_dataset

PURE = {"spectra": "pure", "smoothing": None}  # pure-pixel spectra, per-pixel maps


def lines_of(ds):
    return {"never_pure": "lines", "elements": list(ds.elements), "edx_model": ds.model}


def score(model, ds):
    return compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)


def test_line_coefficients_of_phase_spectra_are_their_elements():
    model = EDXModel()
    G, n_lines, names = line_basis(model, ["Fe", "Mg", "O", "Si"])
    assert G.shape == (n_lines + 4, model.axis.size) and len(names) == n_lines
    S = np.array([model.phase_spectrum({"Mg": 40, "Si": 20, "O": 40}),
                  model.phase_spectrum({"Fe": 50, "O": 50})])
    C, sd = line_coefficients(S, G, n_lines, counts=np.array([1e6, 1e6]))
    element = np.array([n.split("_")[0] for n in names])
    for j, present in enumerate([("Mg", "Si", "O"), ("Fe", "O")]):
        absent = ~np.isin(element, present)  # zero within 0.2 % of the total
        assert np.abs(C[j, absent]).max() < 2e-3 * np.abs(C[j]).sum()
        assert min(C[j, element == el].max() for el in present) > 0.01
    assert sd.shape == C.shape and np.all(sd > 0) and np.all(sd < 1e-3)
    with pytest.raises(ValueError, match="none of the elements"):
        line_basis(EDXModel(e_min=0.2, e_max=0.4), ["Fe"])


def test_extrapolation_recovers_a_phase_seen_only_mixed_and_pulls_back_an_overshoot():
    model = EDXModel()
    G, n_lines, _ = line_basis(model, ["Fe", "Mg", "O", "Ti"])
    A = model.phase_spectrum({"Mg": 50, "O": 50})
    B = model.phase_spectrum({"Fe": 40, "O": 60})
    C = model.phase_spectrum({"Ti": 40, "O": 60})
    S = np.array([A, 0.6 * B + 0.3 * A + 0.1 * C, C])  # B never more than 0.6 of a pixel
    S2, T, steps = extrapolate_vertices(S, np.full(3, 1e9), np.array([False, True, False]),
                                        G, n_lines)
    assert np.abs(S2[1] - B).max() < 0.02 * B.max()
    np.testing.assert_array_equal(S2[[0, 2]], S[[0, 2]])  # vertices not asked stay
    np.testing.assert_allclose(T.sum(axis=1), 1)
    assert steps[1, 0] > 0.4 and steps[1, 2] > 0.1 and not steps[[0, 2]].any()
    over = 1.3 * B - 0.3 * A  # too far out: its Mg lines are below zero
    S3, _, steps3 = extrapolate_vertices(np.array([A, over, C]), np.full(3, 1e9),
                                         np.array([False, True, False]), G, n_lines)
    assert -0.24 < steps3[1, 0] < -0.22  # moved back towards A: B at -0.3 / 1.3
    assert spectral_angle(S3[1], B) < 0.15 * spectral_angle(np.clip(over, 0, None), B)


def test_a_step_is_kept_only_where_it_is_evidence_of_a_missing_element():
    """A vertex that holds a tenth of its neighbour (lines A K, A L of the neighbour's
    element, X K of its own; zero band +-0.004): the step that takes A out is supported,
    also where A's L line stays above its band (the templates' mismatch in the absorbed,
    overlapped low-energy family); not when the step stops at A L with A K still above
    its band (the phase holds A), when the step is within the band (nothing to take
    out), or when a line no neighbour holds stops it (noise)."""
    names = ["A", "A", "X"]
    allow = np.full((2, 3), 0.004)
    C = np.array([[0.5, 0.1, 0.0], [0.05, 0.01, 0.4]])
    t = np.array([(0.05 + 0.004) / 0.45])  # A K at the band's lower edge
    assert step_supported(C, allow, 1, t, names)
    l_above = np.array([[0.5, 0.1, 0.0], [0.05, 0.03, 0.4]])  # A L not at zero there
    assert step_supported(l_above, allow, 1, t, names)
    holds_a = np.array([[0.5, 0.1, 0.0], [0.1, 0.01, 0.4]])
    t_l = np.array([(0.01 + 0.004) / 0.09])  # A L at the band's edge, A K at 0.038
    assert step_supported(holds_a, allow, 1, t_l, None)  # without the family test
    assert not step_supported(holds_a, allow, 1, t_l, names)
    nearly_pure = np.array([[0.5, 0.1, 0.0], [0.001, 0.0002, 0.4]])
    assert not step_supported(nearly_pure, allow, 1, np.array([0.01]), names)
    noise = np.array([[0.5, 0.001, 0.0], [0.3, -0.003, 0.4]])  # stopped by a line at zero
    assert not step_supported(noise, allow, 1, np.array([0.25]), ["A", "Z", "X"])
    overshoot = np.array([[0.5, 0.1, 0.0], [-0.01, -0.005, 0.4]])
    assert step_supported(overshoot, allow, 1, np.array([-0.02]), names)  # a pull-back
    # a line below its band before the step (B, held by a vertex the step does not move
    # away from: the templates' mismatch, which bounds nothing) does not stop it
    below = np.array([[0.5, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5],
                      [0.05, 0.01, 0.4, -0.006]])
    t_b = np.array([(0.05 + 0.004) / 0.45, 0.0])
    assert step_supported(below, np.full((3, 4), 0.004), 2, t_b, ["A", "A", "X", "B"])


def test_a_pull_back_leaves_every_family_of_the_element_within_its_band():
    """A vertex slightly beyond TiO2: Ti K at -1.5 and Ti L at -1.3 allowances is pulled
    back until both are at the band's lower edge (Ti K then within its band). With Ti K
    at -1.1 and Ti L at -1.5 (the templates' mismatch in the absorbed low-energy family:
    the gold particles on the other model's spectra) lifting Ti L would take Ti K above
    its band, making present an element the pull-back says is absent: the vertex is
    kept."""
    model = EDXModel()
    G, n_lines, names = line_basis(model, ["Au", "O", "Ti"])
    assert names == ["Au_L", "Au_M", "O_K", "Ti_K", "Ti_L"]
    allow = 0.005  # MISMATCH times the vertex's total line intensity, 1 (sd ~ 0)
    c_tio2 = np.array([0.0, 0.0, 0.4, 0.5, 0.1])

    def pull_back(ti_k: float, ti_l: float) -> np.ndarray:
        c_au = np.array([0.5, 0.5 + (ti_k + ti_l) * allow, 0.0, -ti_k * allow,
                         -ti_l * allow])  # |c|_1 = 1
        S = np.array([c_tio2 @ G[:n_lines], c_au @ G[:n_lines]]) + 0.5 * G[n_lines]
        S = S / S.sum(axis=1, keepdims=True)
        _, _, steps = extrapolate_vertices(S, np.full(2, 1e14), np.array([False, True]),
                                           G, n_lines,
                                           line_elements=["Au", "Au", "O", "Ti", "Ti"])
        return steps[1]

    lifts_both = pull_back(1.5, 1.3)
    assert -0.02 < lifts_both[0] < -0.01  # Ti L's 0.3 allowances over its 0.1
    assert not pull_back(1.1, 1.5).any()  # Ti L lifted only with Ti K at +1.2: kept


def test_a_mixture_plateau_takes_out_a_neighbour_whole():
    """Line intensities of a matrix (Fe K, Fe L, Cr K of elements Fe, Fe, Cr, and Y K)
    and a cluster at half of it (zero band +-0.004): the step that takes the matrix out
    ends Fe and Cr in the band, so the cluster is a mixture plateau. Not a plateau: a
    pure phase that keeps a shared Fe above its band (the ferrite beside its carbide),
    a cluster that shares one element only with its neighbour (a SiO2 layer beside Si:
    only the stopping line is tested), a neighbour not at a pure cluster, or a step that
    moves away from no vertex."""
    names = ["Fe", "Fe", "Cr", "Y"]
    allow = np.full((2, 4), 0.004)
    matrix = [0.6, 0.3, 0.1, 0.0]
    C = np.array([matrix, [0.3, 0.15, 0.05, 0.5]])
    t = np.array([(0.05 + 0.004) / 0.05])  # Cr K at the band's lower edge
    assert step_supported(C, allow, 1, t, names)
    assert mixture_plateau(C, allow, 1, t, names)
    assert not mixture_plateau(C, allow, 1, t, names, partners=np.array([False, True]))
    assert not mixture_plateau(C, allow, 1, np.zeros(1), names)
    keeps_fe = np.array([matrix, [0.7, 0.35, 0.05, 0.5]])  # Fe-richer: Fe K stays
    t_fe = np.array([(0.05 + 0.004) / 0.05])
    assert step_supported(keeps_fe, allow, 1, t_fe, names)
    assert not mixture_plateau(keeps_fe, allow, 1, t_fe, names)
    one_element = np.array([[0.6, 0.3, 0.0, 0.0], [0.3, 0.15, 0.0, 0.5]])  # Si and O
    t_one = np.array([(0.15 + 0.004) / 0.15])
    assert step_supported(one_element, allow, 1, t_one, ["Si", "Si", "Cr", "O"])
    assert not mixture_plateau(one_element, allow, 1, t_one, ["Si", "Si", "Cr", "O"])


def _plateau_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray, EDXModel]:
    """A Y-Ti oxide that is exactly half of every pixel it touches: 14 squares of 8 x 8 px
    over an Fe-Cr matrix, 64 x 64 at 150 counts per pixel (seed 0). Returns the counts,
    the true spectra and maps, and the model that made them."""
    model = EDXModel()
    a = model.phase_spectrum({"Fe": 85, "Cr": 15})
    b = model.phase_spectrum({"Y": 18, "Ti": 18, "O": 64})
    S = np.array([a / a.sum(), b / b.sum()])
    maps = np.zeros((64, 64, 2))
    maps[..., 0] = 1.0
    rng = np.random.default_rng(0)
    for _ in range(14):
        y, x = rng.integers(0, 56, 2)
        maps[y:y + 8, x:x + 8] = [0.5, 0.5]
    counts = rng.poisson(150 * maps @ S).astype(float)
    return counts, S, maps, model


def test_auto_extrapolates_a_false_pure_plateau():
    """A phase that is exactly half of every pixel it touches: 14 squares of 8 x 8 px of
    a Y-Ti oxide over an Fe-Cr matrix (64 x 64, 150 counts per pixel, seed 0). At b = 4
    its plateau bins form a tight cluster that passes the pure-cluster tests, so the
    vertex is moved to the 50/50 mixture (measured 47.5 degrees, oracle 3.0) and the
    default keeps it there. With never_pure='auto' the cluster holds the matrix's Fe and
    Cr and the line step takes both out together: a mixture plateau, extrapolated to
    3.3 degrees (tolerance 1.3x the oracle). The matrix, a pure phase, keeps its
    spectrum exactly."""
    counts, S, maps, model = _plateau_sample()
    physics = {"elements": ["Fe", "Cr", "Y", "Ti", "O"], "edx_model": model}
    plain = PSNMF(2, 4, random_state=0, **PURE).fit(counts)
    auto = PSNMF(2, 4, random_state=0, **PURE, never_pure="auto", **physics).fit(counts)
    oracle = spectral_angle(oracle_spectra(counts, maps).S[1], S[1])
    before, after = (compare_to_truth(m.spectra_, m.maps_, S, maps) for m in (plain, auto))
    j, m = int(before["order"][1]), int(before["order"][0])
    assert plain.vertex_scale_[j] == 4 and before["angle"][1] > 10 * oracle  # false pure
    assert auto.vertex_steps_[j, m] > 0.5 and not auto.vertex_steps_[m].any()
    assert after["angle"][1] < 1.3 * oracle
    np.testing.assert_array_equal(auto.spectra_[m], plain.spectra_[m])


def test_extrapolate_never_pure_tries_vertices_at_a_cluster_as_plateaus():
    """A matrix (Fe-Cr) vertex at its pure cluster and a second vertex at the 50/50
    mixture of the matrix with a Y-Ti oxide: the second vertex is extrapolated to the oxide
    whether it moved to its cluster (``scales`` 4) or its cluster lies at the vertex
    (``at_vertex``), because the cluster is a mixture plateau; the matrix, whose step
    would take out no neighbour, keeps its spectrum. A vertex moved to the corner of its
    faces is never tried."""
    import scipy.sparse as sp

    from psnmf.engine.two_stage import BinnedFit, extrapolate_never_pure

    model = EDXModel()
    a = model.phase_spectrum({"Fe": 85, "Cr": 15})
    b = model.phase_spectrum({"Y": 18, "Ti": 18, "O": 64})
    a, b = a / a.sum(), b / b.sum()
    S = np.array([a, 0.5 * a + 0.5 * b])
    maps = np.repeat(np.eye(2), 50, axis=0)
    binned = sp.csr_matrix(np.random.default_rng(0).poisson(5000 * maps @ S).astype(float))
    elements = ["Fe", "Cr", "Y", "Ti", "O"]

    def fit(scales, at_vertex, face_moved=None):
        return BinnedFit(nmf=None, spectra=S, maps=maps, transform=np.eye(2),
                         moved=np.array([True, False]), clusters=[None, None],
                         scales=np.array(scales), at_vertex=np.array(at_vertex),
                         face_moved=face_moved)

    for f in (fit([4, 4], [False, False]), fit([4, 0], [False, True])):
        out, steps = extrapolate_never_pure(binned, f, model, elements, solve_maps=False)
        assert steps[1, 0] > 0.8 and not steps[0].any()
        assert spectral_angle(out.spectra[1], b) < 0.1 * spectral_angle(S[1], b)
        np.testing.assert_array_equal(out.spectra[0], S[0])
    faces = fit([4, 1], [False, False], face_moved=np.array([False, True]))
    assert not extrapolate_never_pure(binned, faces, model, elements, solve_maps=False)[1].any()


def test_auto_extrapolates_never_pure_nanoclusters_given_the_elements():
    """ODS steel (mixed_phase, medium counts, 96 x 96, seed 0): the Y2Ti2O7 nanoclusters
    are at most half of any pixel. The default ('keep') keeps NMF's vertex (4.7x the
    oracle angle); with never_pure='auto' and the elements given, it is extrapolated
    until its Fe and Cr lines vanish: measured 1.08x, tolerance 1.3x. Ferrite and M23C6
    have pure clusters and keep their spectra exactly."""
    ds = sample_dataset("mixed_phase", snr="medium", seed=0, shape=(96, 96))
    plain = PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)
    auto = PSNMF(3, 4, random_state=0, **PURE, never_pure="auto",
                 elements=list(ds.elements), edx_model=ds.model).fit(ds.counts)
    oracle = oracle_limits(ds).angle
    before, after = score(plain, ds), score(auto, ds)
    y = list(ds.phase_names).index("Y2Ti2O7")
    assert before["angle"][y] > 3.0 * oracle[y]
    assert after["angle"][y] < 1.3 * oracle[y]
    pure = [int(before["order"][i]) for i in range(3) if i != y]
    np.testing.assert_array_equal(auto.spectra_[pure], plain.spectra_[pure])
    assert auto.vertex_steps_[int(before["order"][y])].any()


@pytest.mark.parametrize(("name", "snr", "seed"), [("small_grains", "medium", 1),
                                                   ("mixed_phase", "low", 0)])
def test_auto_keeps_vertices_whose_step_is_no_evidence(name, snr, seed):
    """96 x 96: the spinel grains among olivine and pyroxene (small_grains, 'medium') have
    no Si left in their vertex to take out (the step stays within the lines' zero band;
    extrapolated, 1.07x -> 1.37x the oracle angle); the M23C6 carbides in ferrite
    (mixed_phase, 'low') hold Fe, and their vertex reaches zero in Fe L with Fe K well
    above it (extrapolated, 1.12x -> 2.55x). Given the elements, 'auto' keeps both
    vertices exactly; every other kept vertex (Y2Ti2O7) may still move."""
    ds = sample_dataset(name, snr=snr, seed=seed, shape=(96, 96))
    k = ds.maps.shape[-1]
    plain = PSNMF(k, 4, random_state=0, **PURE).fit(ds.counts)
    auto = PSNMF(k, 4, random_state=0, **PURE, never_pure="auto",
                 elements=list(ds.elements), edx_model=ds.model).fit(ds.counts)
    phase = "Spl" if name == "small_grains" else "M23C6"
    j = int(score(plain, ds)["order"][list(ds.phase_names).index(phase)])
    assert plain.vertex_scale_[j] == 0  # no pure cluster at any scale
    np.testing.assert_array_equal(auto.spectra_[j], plain.spectra_[j])
    assert not auto.vertex_steps_[j].any()


def test_a_vertex_at_its_pure_cluster_is_not_extrapolated():
    """ODS steel (mixed_phase, 'low', 96 x 96, seed 0): no cluster moves the M23C6 vertex
    (radius-9 px grains), because at b = 2 its pure pixels form a cluster at the vertex
    itself (the depth test); :func:`refine_vertices` flags it ``at_vertex`` and the line
    extrapolation leaves it, whatever the line tests say (on espm's spectra they took its
    Fe out, 5.2 -> 16.1 degrees). The never-pure Y2Ti2O7, whose richest pixels are the
    upper end of a tail, is not flagged and is extrapolated; flagged, it would be kept
    (its NMF vertex is no mixture plateau, which a flagged vertex is tried as)."""
    import scipy.sparse as sp

    from psnmf.engine.binning import bin_counts
    from psnmf.engine.two_stage import (
        binned_kwargs,
        extrapolate_never_pure,
        fit_binned,
        refine_vertices,
    )

    ds = sample_dataset("mixed_phase", snr="low", seed=0, shape=(96, 96))
    est = PSNMF(3, 4, random_state=0)
    counts = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(float))
    binned = bin_counts(counts, (96, 96), 4)
    fit = refine_vertices(counts, (96, 96), 4,
                          fit_binned(binned, 3, random_state=0,
                                     **binned_kwargs(est.get_params())))
    order = [int(i) for i in match_components(fit.spectra, ds.spectra)]
    carbide, clusters = (order[list(ds.phase_names).index(n)]
                         for n in ("M23C6", "Y2Ti2O7"))
    assert fit.scales[carbide] == 0 and fit.scales[clusters] == 0
    assert fit.at_vertex[carbide] and not fit.at_vertex[clusters]
    moved, steps = extrapolate_never_pure(binned, fit, ds.model, list(ds.elements),
                                          solve_maps=False)
    assert not steps[carbide].any() and steps[clusters].any()
    np.testing.assert_array_equal(moved.spectra[carbide], fit.spectra[carbide])
    flagged = fit.at_vertex.copy()
    flagged[clusters] = True
    fit.at_vertex = flagged
    _, steps = extrapolate_never_pure(binned, fit, ds.model, list(ds.elements),
                                      solve_maps=False)
    assert not steps.any()


def test_lines_recover_never_pure_particles_near_the_oracle():
    """Catalyst (medium counts, 96 x 96, seed 0): Pt particles are at most half of any
    pixel, on a carbon film. The pure-pixel method keeps NMF's Pt vertex, 13.8 degrees from
    the truth (2.0x the oracle); extrapolated until its C line vanishes, Pt is measured at
    9.9 degrees (1.43x the oracle); the tolerance is 1.55x. The CeO2 particles (at most
    0.86 of a pixel) improve (1.73x -> 1.22x); the film, which has pure pixels, keeps its
    spectrum exactly."""
    ds = sample_dataset("catalyst", snr="medium", seed=0, shape=(96, 96))
    base = PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)
    lines = PSNMF(3, 4, random_state=0, **PURE, **lines_of(ds)).fit(ds.counts)
    oracle = oracle_limits(ds).angle
    before, after = score(base, ds), score(lines, ds)
    names = list(ds.phase_names)
    pt, ceo2, film = (names.index(n) for n in ("Pt", "CeO2", "support"))
    assert before["angle"][pt] > 1.9 * oracle[pt]
    assert after["angle"][pt] < 1.55 * oracle[pt]
    assert after["angle"][ceo2] < 0.8 * before["angle"][ceo2]
    assert after["mse"][pt] < 0.9 * before["mse"][pt]
    j_film = before["order"][film]
    np.testing.assert_array_equal(lines.spectra_[j_film], base.spectra_[j_film])
    assert not lines.vertex_steps_[j_film].any() and lines.vertex_steps_.any()
    np.testing.assert_allclose(lines.spectra_.sum(axis=1), 1)
    np.testing.assert_allclose(lines.maps_.sum(axis=-1), 1, atol=1e-6)
    # the same from the HyperSpy signal: elements and the model from its metadata
    from_signal = PSNMF(3, 4, random_state=0, never_pure="lines", **PURE).fit(ds.to_signal())
    np.testing.assert_allclose(from_signal.spectra_, lines.spectra_, atol=1e-9)


def test_lines_leave_a_fit_whose_vertices_all_have_pure_clusters():
    """Eutectic lamellae (medium, 96 x 96): every vertex moves to its pure cluster, so
    never_pure='lines' returns the default fit unchanged."""
    ds = sample_dataset("eutectic", snr="medium", seed=0, shape=(96, 96))
    base = PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)
    lines = PSNMF(3, 4, random_state=0, **PURE, **lines_of(ds)).fit(ds.counts)
    assert base.vertex_moved_.all()
    np.testing.assert_array_equal(lines.spectra_, base.spectra_)
    np.testing.assert_array_equal(lines.maps_, base.maps_)
    assert not lines.vertex_steps_.any()


def test_lines_need_elements_a_model_and_pure_spectra():
    ds = sample_dataset("catalyst", snr="low", seed=0, shape=(16, 16))
    with pytest.raises(ValueError, match="needs the sample's elements"):
        PSNMF(3, 4, never_pure="lines", **PURE).fit(ds.counts)
    with pytest.raises(ValueError, match="spectra='pure'"):
        PSNMF(3, 4, spectra="nmf", smoothing=None, **lines_of(ds)).fit(ds.counts)
    with pytest.raises(ValueError, match="never_pure='outside'"):
        PSNMF(3, 4, never_pure="outside").fit(ds.counts)
    short = EDXModel(e_min=0.2, e_max=10.0)
    with pytest.raises(ValueError, match="channels"):
        PSNMF(3, 4, random_state=0, **PURE, never_pure="lines", elements=list(ds.elements),
              edx_model=short).fit(ds.counts)


def test_bootstrap_replays_the_line_extrapolation():
    """ODS steel (mixed_phase, 'medium', 96 x 96, the noise seed of benchmarks/coverage.py's
    seed 1): never_pure='auto' moves the never-pure Y2Ti2O7 vertex by its lines given the
    signal's elements; every bootstrap replicate replays that move with the same elements
    and model (measured: Fe 0.27-0.43 at.% in the replicates, as in the estimate), and
    the 95 % intervals of the nanoclusters' O, Ti and Y cover the truth (Ti 18.18 in
    [16.6, 18.8])."""
    from psnmf.uncertainty import bootstrap, composition_intervals

    ds = sample_dataset("mixed_phase", snr="medium", seed=101, shape=(96, 96))
    signal = ds.to_signal()
    model = PSNMF(3, 4, smoothing=None, random_state=0, never_pure="auto").fit(signal)
    y = int(score(model, ds)["order"][list(ds.phase_names).index("Y2Ti2O7")])
    assert model.vertex_steps_[y].any() and model.line_physics_[1] == list(ds.elements)
    res = bootstrap(model, signal, n_boot=6, elements=list(ds.elements),
                    edx_model=ds.model, width_tol=None, random_state=1,
                    quantify_options={"k_factor_sd": 0.0})
    fe = [rep[y].get("Fe", 0.0) for rep in res.composition_replicates]
    assert max(fe) < 1.0 and res.compositions[y].get("Fe", 0.0) < 1.0
    iv = composition_intervals(res)[y]
    for el, truth in ds.compositions["Y2Ti2O7"].items():
        lo, hi, _ = iv[el]
        assert lo <= truth <= hi, (el, truth, lo, hi)


def test_bootstrap_replays_a_mixture_plateau():
    """The false pure plateau of :func:`test_auto_extrapolates_a_false_pure_plateau`
    (64 x 64, seed 0): the fit moves the oxide's vertex to its b = 4 plateau cluster and
    extrapolates it as a mixture plateau (3.3 degrees). Replicates whose binned stage finds
    the plateau cluster again must try it as a plateau too, as the fit did (measured: all
    within 2.3-3.9 degrees of the estimate; not tried, 5 of 8 replicates kept the 50/50
    mixture, 47 degrees from it)."""
    from psnmf.uncertainty import bootstrap

    counts, S, maps, model = _plateau_sample()
    elements = ["Fe", "Cr", "Y", "Ti", "O"]
    auto = PSNMF(2, 4, random_state=0, **PURE, never_pure="auto", elements=elements,
                 edx_model=model).fit(counts)
    j = int(compare_to_truth(auto.spectra_, auto.maps_, S, maps)["order"][1])
    assert auto.vertex_scale_[j] == 4 and auto.vertex_steps_[j].any()
    res = bootstrap(auto, counts, n_boot=6, width_tol=None)
    angles = [spectral_angle(rep[j], auto.spectra_[j]) for rep in res.replicates]
    assert max(angles) < 4.0, angles
