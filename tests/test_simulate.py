"""Tests of the EDX simulator: physics, microstructures, datasets, files and CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from psnmf import physics
from psnmf import simulate as sim
from psnmf.physics import EDXModel

MODEL = EDXModel()


# --- physics ---------------------------------------------------------------------------------
def test_default_axis_is_0p2_to_20_kev_at_10_ev():
    ax = MODEL.axis
    assert (ax.offset, ax.scale, ax.size) == (0.2, 0.01, 1980)
    assert ax.values[-1] == pytest.approx(19.99)


@pytest.mark.parametrize(
    "element, family, energy",
    [
        ("Fe", "K", 6.40),
        ("Mg", "K", 1.25),
        ("Nd", "L", 5.23),
        ("O", "K", 0.525),
        ("Si", "K", 1.74),
        ("Ca", "K", 3.69),
        ("Cu", "K", 8.05),
        ("Sm", "L", 5.64),
        ("U", "L", 13.61),
    ],
)
def test_main_lines_at_tabulated_energies(element, family, energy):
    line = MODEL.main_line(element, family)
    assert line.energy == pytest.approx(energy, abs=0.01)
    # and the template peaks there
    template = MODEL.family_template(element, family)
    assert MODEL.energy[np.argmax(template)] == pytest.approx(energy, abs=0.011)


def test_phase_spectrum_peaks_where_the_lines_are():
    spec = MODEL.phase_spectrum(sim.MANTLE_PHASES["Fp"])
    e = MODEL.energy
    for energy in (0.525, 1.254, 6.404, 8.048):  # O Ka, Mg Ka, Fe Ka, Cu Ka
        i = MODEL.axis.index(energy)
        window = spec[i - 8 : i + 9]
        assert e[i - 8 + np.argmax(window)] == pytest.approx(energy, abs=0.011)
        assert window.max() > 3 * spec[i + 25]  # a peak above the continuum
    assert spec.sum() == pytest.approx(1.0)
    assert np.all(spec >= 0)


def test_resolution_law_and_efficiency():
    assert MODEL.fwhm(5.8988) == pytest.approx(0.130, abs=1e-4)
    # Fiori-Newbury: FWHM^2 grows by 2.5 eV per eV
    f0, f1 = MODEL.fwhm([1.0, 10.0])
    assert (f1**2 - f0**2) * 1e6 == pytest.approx(2.5 * 9000, rel=1e-6)
    eff = MODEL.efficiency(np.array([0.525, 1.74, 6.4, 19.0]))
    assert 0.3 < eff[0] < 0.9 and eff[2] > 0.95 and eff[3] < eff[2]


def test_cross_sections_are_physical():
    z_fe = physics.atomic_number("Fe")
    sigma_k = physics.ionization_cross_section(z_fe, "K", 200.0)
    assert 1e-22 < sigma_k < 3e-22  # ~150 barn at 200 kV
    assert physics.ionization_cross_section(z_fe, "K", 5.0) == 0.0  # below the 7.1 keV edge
    # thin-film k-factors (atomic basis, Si = 1) in the usual range
    k = MODEL.k_factors(["Si", "Mg", "Fe", "O"])
    assert k["Si"] == 1.0 and 0.9 < k["Mg"] < 1.5 and 0.5 < k["Fe"] < 1.2 and 1.5 < k["O"] < 4


def test_bad_compositions_and_elements_are_rejected_clearly():
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        MODEL.phase_spectrum({"Xx": 50, "O": 50})
    with pytest.raises(ValueError, match="sum to 80"):
        MODEL.phase_spectrum({"Mg": 40, "O": 40})
    with pytest.raises(ValueError, match="multiply by 100"):
        MODEL.phase_spectrum({"Mg": 0.5, "O": 0.5})
    with pytest.raises(ValueError, match=">= 0"):
        MODEL.phase_spectrum({"Mg": -10, "O": 110})
    with pytest.raises(ValueError, match="keV"):
        EDXModel(fwhm_mn_ka=130)


# --- microstructures -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mantle", "eutectic", "ceramic", "catalyst"])
def test_builtin_microstructures_sum_to_one(name):
    spec = sim.load_sample(name)
    ms = sim.from_recipe(spec["microstructure"], (60, 70))
    assert ms.maps.shape == (60, 70, len(spec["phases"]))
    assert set(ms.phase_names) == set(spec["phases"])
    np.testing.assert_allclose(ms.maps.sum(axis=2), 1.0, atol=1e-12)
    assert ms.maps.min() >= 0
    if ms.thickness is not None:
        assert ms.thickness.mean() == pytest.approx(1.0)


def test_mantle_maps_have_pure_and_mixed_pixels_of_every_phase():
    ds = sim.mantle("low", seed=0, shape=(120, 120))
    maps = ds.maps
    for k, name in enumerate(ds.phase_names):
        assert (maps[..., k] == 1.0).sum() > 10, f"no pure {name} pixels"
        assert ((maps[..., k] > 0.05) & (maps[..., k] < 0.95)).sum() > 10, f"no mixed {name}"
    frac = maps.mean(axis=(0, 1))
    assert frac[0] > frac[1] > frac[2]  # Brg matrix > Fp grains > CaPv grains


# --- datasets ---------------------------------------------------------------------------------
def test_simulate_conserves_counts_and_follows_the_convention():
    ds = sim.mantle("medium", seed=3, shape=(40, 50))
    n_pix = 40 * 50
    assert ds.counts.dtype == np.int32 and ds.counts.shape == (40, 50, 1980)
    np.testing.assert_allclose(ds.spectra.sum(axis=1), 1.0)
    nf = ds.noise_free
    np.testing.assert_allclose(nf.sum(axis=2), 147.0)
    np.testing.assert_allclose(nf, 147.0 * np.einsum("yxk,ke->yxe", ds.maps, ds.spectra))
    mean = ds.counts.sum() / n_pix
    assert abs(mean - 147.0) < 4 * np.sqrt(147.0 / n_pix)  # Poisson: 4 standard errors
    assert set(ds.phase_names) == {"Brg", "Fp", "CaPv"}
    assert ds.compositions["Fp"] == pytest.approx({"Mg": 39.0, "Fe": 10.0, "O": 50.0, "Cu": 1.0})
    assert ds.quant_lines["Nd"] == "Nd_La" and ds.k_factors["Si"] == 1.0


def test_seed_reproducibility_and_low_preset():
    a = sim.mantle("low", seed=5, shape=(30, 30))
    b = sim.mantle("low", seed=5, shape=(30, 30))
    c = sim.mantle("low", seed=6, shape=(30, 30))
    assert np.array_equal(a.counts, b.counts) and not np.array_equal(a.counts, c.counts)
    np.testing.assert_array_equal(
        a.maps, c.maps
    )  # the microstructure does not follow the noise seed
    assert a.counts_per_pixel == 18.0


def test_thickness_map_scales_counts():
    maps = np.ones((20, 20, 1))
    thick = np.ones((20, 20))
    thick[:, 10:] = 3.0
    ds = sim.simulate({"MgO": {"Mg": 50, "O": 50}}, maps, 200, seed=0, thickness=thick)
    nf = ds.noise_free.sum(axis=2)
    assert nf.mean() == pytest.approx(200.0)
    assert nf[:, 10:].mean() == pytest.approx(3 * nf[:, :10].mean())


def test_simulate_rejects_bad_input():
    maps = np.ones((4, 4, 1))
    with pytest.raises(ValueError, match="counts_per_pixel must be > 0"):
        sim.simulate({"A": {"Mg": 50, "O": 50}}, maps, -5)
    with pytest.raises(ValueError, match="sum to 1"):
        sim.simulate({"A": {"Mg": 50, "O": 50}, "B": {"Fe": 50, "O": 50}}, np.ones((4, 4, 2)), 10)
    with pytest.raises(ValueError, match=r"shape \(ny, nx, 2\)"):
        sim.simulate({"A": {"Mg": 50, "O": 50}, "B": {"Fe": 50, "O": 50}}, maps, 10)
    with pytest.raises(ValueError, match="unknown sample"):
        sim.sample_dataset("no_such_sample")
    with pytest.raises(ValueError, match="unknown snr preset"):
        sim.mantle("high", shape=(8, 8))


# --- sample files -------------------------------------------------------------------------------
SAMPLE = {
    "name": "duplex",
    "phases": {"ferrite": {"Fe": 97.0, "Cr": 3.0}, "oxide": {"Cr": 40.0, "O": 60.0}},
    "microstructure": {
        "type": "grains_in_matrix",
        "matrix": "ferrite",
        "grains": [{"phase": "oxide", "radius": 5, "number": 4}],
        "blur": 1.0,
        "seed": 2,
    },
    "shape": [32, 32],
    "counts_per_pixel": 50,
}


def test_json_and_toml_sample_files(tmp_path):
    path = tmp_path / "duplex.json"
    path.write_text(json.dumps(SAMPLE))
    ds = sim.sample_dataset(path, seed=0)
    assert ds.phase_names == ["ferrite", "oxide"] and ds.shape == (32, 32)
    assert ds.counts_per_pixel == 50
    toml = tmp_path / "duplex.toml"
    toml.write_text(
        'name = "duplex"\nshape = [32, 32]\ncounts_per_pixel = 50\n'
        "[phases.ferrite]\nFe = 97.0\nCr = 3.0\n[phases.oxide]\nCr = 40.0\nO = 60.0\n"
        '[microstructure]\ntype = "grains_in_matrix"\nmatrix = "ferrite"\nblur = 1.0\nseed = 2\n'
        '[[microstructure.grains]]\nphase = "oxide"\nradius = 5\nnumber = 4\n'
    )
    ds2 = sim.sample_dataset(toml, seed=0)
    np.testing.assert_array_equal(ds.counts, ds2.counts)
    bad = dict(SAMPLE, microstructure={"type": "spaghetti"})
    with pytest.raises(ValueError, match="unknown microstructure type 'spaghetti'"):
        sim.sample_dataset(bad)
    with pytest.raises(ValueError, match="unknown key"):
        sim.load_sample(dict(SAMPLE, colour="red"))


# --- files --------------------------------------------------------------------------------------
def test_hspy_round_trip_with_truth(tmp_path):
    import hyperspy.api as hs

    ds = sim.mantle("medium", seed=1, shape=(16, 20))
    path = ds.save(tmp_path / "m.hspy")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    s = hs.load(path)
    assert s.metadata.Signal.signal_type == "EDS_TEM"
    assert s.metadata.Acquisition_instrument.TEM.beam_energy == 200.0
    ax = s.axes_manager.signal_axes[0]
    assert (ax.name, ax.units, ax.offset, ax.scale, ax.size) == ("Energy", "keV", 0.2, 0.01, 1980)
    assert [a.name for a in s.axes_manager.navigation_axes] == ["x", "y"]
    assert s.axes_manager.navigation_shape == (20, 16)
    assert "Nd" in s.metadata.Sample.elements and "Nd_La" in s.metadata.Sample.xray_lines
    np.testing.assert_array_equal(s.data, ds.counts)
    np.testing.assert_allclose(s.metadata.Simulation.spectra, ds.spectra)
    back = sim.load_simulated(path)
    np.testing.assert_array_equal(back.counts, ds.counts)
    np.testing.assert_allclose(back.maps, ds.maps)
    np.testing.assert_allclose(back.noise_free, ds.noise_free)
    assert back.phase_names == ds.phase_names and back.model == ds.model
    assert back.compositions["CaPv"] == pytest.approx(ds.compositions["CaPv"])
    assert back.k_factors == pytest.approx(ds.k_factors) and back.quant_lines == ds.quant_lines
    assert back.seed == 1 and back.sample["name"] == "mantle"
    with pytest.raises(ValueError, match=".hspy"):
        ds.save(tmp_path / "m.txt")


def _cli(argv):
    from psnmf.cli import simulate as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    return args.func(args)


def test_cli_writes_a_readable_file(tmp_path, capsys):
    out = tmp_path / "mantle.hspy"
    assert _cli(["mantle", "--snr", "low", "--seed", "2", "--shape", "24x30", "-o", str(out)]) == 0
    ds = sim.load_simulated(out)
    assert ds.shape == (24, 30) and ds.counts_per_pixel == 18.0
    np.testing.assert_array_equal(ds.counts, sim.mantle("low", seed=2, shape=(24, 30)).counts)
    sample = tmp_path / "duplex.json"
    sample.write_text(json.dumps(SAMPLE))
    out2 = tmp_path / "duplex.hspy"
    assert _cli(["--sample", str(sample), "--counts", "20", "-o", str(out2)]) == 0
    assert sim.load_simulated(out2).counts_per_pixel == 20.0
    assert _cli(["mantle", "--counts", "-3", "-o", str(out2)]) == 2
    assert _cli(["mantle"]) == 2
    assert "-o" in capsys.readouterr().err
