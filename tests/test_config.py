"""The TOML configuration of ``psnmf unmix`` (``--config``, the ``config.toml`` every run
writes) and runs on several files (one results folder each, ``index.html``/``index.json``)."""

from __future__ import annotations

import inspect
import json
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from psnmf import __version__
from psnmf.cli import build_parser, main
from psnmf.cli.unmix import configuration
from psnmf.io import read_manifest
from psnmf.pipeline import unmix
from psnmf.pipeline.batch import folder_names
from psnmf.pipeline.config import KEYS, TABLES, ConfigError, RunConfig, describe
from psnmf.simulate import mantle

FAST = ["-k", "3", "-b", "4", "--smoothing", "none", "--bootstrap", "0", "--max-iter", "150",
        "--max-iter-full", "40"]


def _save(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mantle("medium", seed=seed, shape=(24, 24)).to_signal().save(path)
    return path


def _load(path: Path) -> np.ndarray:
    import hyperspy.api as hs

    return np.asarray(hs.load(path).data)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A library run with non-default settings into ``out``."""
    root = tmp_path_factory.mktemp("cfg")
    src = _save(root / "data" / "a.hspy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = unmix(src, n_components=3, bin_factor=4, smoothing=None, n_boot=0, seed=3,
                    max_iter=150, max_iter_full=40, report=False, output_dir=root / "out",
                    energy_range=(0.3, None), progress=False,
                    quantify_options={"thickness": 80.0, "exclude_elements": ["Cu"]})
    return root, src, res


def test_defaults_are_those_of_unmix():
    sig = inspect.signature(unmix)
    call = {name: p.default for name, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}
    assert RunConfig.from_unmix_call(call).values == RunConfig().values
    # every run parameter of the schema is a parameter of unmix
    params = {k.name for k in KEYS.values() if k.run and k.table is None}
    assert params <= set(sig.parameters)
    assert "n_components = \"auto\"" in describe()


def test_every_run_writes_its_complete_configuration(first_run):
    root, src, res = first_run
    out = root / "out"
    text = (out / "config.toml").read_text()
    assert text.startswith("# The configuration of a psnmf unmix run")
    data = tomllib.loads(text)
    assert data["psnmf_version"] == __version__ and data["files"] == [str(src.resolve())]
    assert data["n_components"] == 3 and data["bin_factor"] == 4 and data["seed"] == 3
    assert data["smoothing"] == "none" and data["energy_range"] == [0.3, "auto"]
    assert data["bins"] == [4, 8, 16] and data["vertex"] is True  # defaults filled in
    assert data["quantify"]["thickness"] == 80.0
    assert data["quantify"]["exclude_elements"] == ["Cu"]
    assert data["quantify"]["method"] == "CL"
    written = {k.path for k in KEYS.values() if k.written}
    flat = {*(k for k in data if k not in TABLES),
            *(f"{t}.{k}" for t in TABLES for k in data[t])}
    assert flat == written  # every parameter, nothing about where the run wrote
    assert res.paths["config"] == out / "config.toml"
    assert json.loads((out / "summary.json").read_text())["files"]["config"] == "config.toml"
    assert "config.toml" in read_manifest(out)["files"]


def test_rerun_from_config_reproduces_the_run(first_run, tmp_path, monkeypatch, capsys):
    root, _, _ = first_run
    monkeypatch.chdir(tmp_path)
    assert main(["unmix", "--config", str(root / "out" / "config.toml"), "--quiet"]) == 0, \
        capsys.readouterr().err
    again = tmp_path / "a_psnmf"  # one file: the default folder <stem>_psnmf, as without
    first = json.loads((root / "out" / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    assert second["parameters"] == first["parameters"]
    assert second["heldout_deviance"] == first["heldout_deviance"]
    for name in ("component_spectra.hspy", "component_maps.hspy", "count_scale.hspy"):
        np.testing.assert_array_equal(_load(again / name), _load(root / "out" / name))
    assert (again / "config.toml").read_text() == (root / "out" / "config.toml").read_text()


def test_command_line_overrides_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "run.toml"
    cfg.write_text('files = ["x.hspy", "y.hspy"]\nn_components = 3\nbin_factor = 4\n'
                   'vertex = false\nseed = 5\noutput = "res"\n'
                   '[quantify]\nthickness = 50\nk_factors = "k.csv"\n')

    def parsed(*extra: str) -> RunConfig:
        return configuration(build_parser().parse_args(["unmix", "--config", str(cfg),
                                                        *extra]))

    c = parsed()
    # paths in the file are relative to its folder
    assert c["files"] == [str(tmp_path / "sub" / "x.hspy"), str(tmp_path / "sub" / "y.hspy")]
    assert c["output"] == str(tmp_path / "sub" / "res")
    assert c["quantify.k_factors"] == str(tmp_path / "sub" / "k.csv")
    kw = c.unmix_kwargs()
    assert (kw["n_components"], kw["bin_factor"], kw["vertex"], kw["seed"]) == (3, 4, False, 5)
    assert kw["quantify_options"]["thickness"] == 50.0
    c = parsed("-k", "2", "--vertex", "--seed", "7", "--thickness", "80,20", "-o", "elsewhere",
               "z.hspy")
    kw = c.unmix_kwargs()
    assert (kw["n_components"], kw["bin_factor"], kw["vertex"], kw["seed"]) == (2, 4, True, 7)
    assert kw["quantify_options"]["thickness"] == 80.0
    assert kw["quantify_options"]["thickness_sigma"] == 20.0
    assert c["files"] == ["z.hspy"] and c["output"] == "elsewhere"  # as given, from the cwd
    assert c.sources["n_components"] == "the command line"
    assert c.sources["bin_factor"] == str(cfg)
    assert parsed("-k", "auto").unmix_kwargs()["n_components"] == "auto"
    cfg.write_text('smoothing = 0.5\nwrite_denoised = true\n')
    assert parsed().unmix_kwargs()["smoothing"] == 0.5
    kw = parsed("--smoothing", "none", "--no-write-denoised").unmix_kwargs()
    assert kw["smoothing"] is None and kw["write_denoised"] is False  # None is a value


@pytest.mark.parametrize("text, words", [
    ("bin = 4", ["unknown key 'bin'", "Did you mean 'bin_factor'"]),
    ("n_componets = 3", ["unknown key 'n_componets'", "'n_components'"]),
    ("thickness = 80", ["unknown key 'thickness'", "[quantify] thickness"]),
    ("[quantify]\nthicknes = 80", ["unknown key 'quantify.thicknes'", "'thickness'"]),
    ('n_components = "three"', ["key 'n_components'", "integer >= 1", "'three'",
                                "Fix: e.g. n_components = 3"]),
    ("vertex = 1", ["key 'vertex'", "true or false", "Fix: e.g. vertex = true"]),
    ("bins = [2, 0]", ["key 'bins'", "positive integers"]),
    ("n_boot = 1", ["key 'n_boot'", "0 or an integer >= 2"]),
    ("smoothing = -1", ["key 'smoothing'", ">= 0"]),
    ("energy_range = [15, 0.2]", ["key 'energy_range'", "LO below HI"]),
    ("[quantify]\nmethod = \"XYZ\"", ["key 'quantify.method'", '"CL"', "[quantify] table"]),
    ("[quantify]\nthickness_from = \"charge\"",
     ["key 'quantify.thickness_from'", '"auto", "electroneutrality", "none"',
      'Fix: e.g. thickness_from = "electroneutrality"']),
    ("[quantify]\nvalences = { fe = 3 }",
     ["key 'quantify.valences'", "'fe' is not a chemical symbol", "valences = { Fe = 3 }"]),
    ("[quantify]\nvalences = { Fe = \"three\" }",
     ["key 'quantify.valences'", "Fe's valence 'three' is not a number"]),
    ("[quantify]\nvalences = 3", ["key 'quantify.valences'", "element = valence"]),
    ("[quantify]\ncharge_balance_sd = -0.1", ["key 'quantify.charge_balance_sd'", ">= 0"]),
    ("[quantify]\ndetector_window_known = \"yes\"",
     ["key 'quantify.detector_window_known'", "true or false"]),
    ("quantify = 3", ["'quantify' must be a table"]),
    ("n_components = ", ["is not valid TOML"]),
])
def test_bad_configuration_is_refused_at_the_door(text, words, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text + "\n")
    assert main(["unmix", "--config", str(cfg), str(tmp_path / "never_read.hspy")]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err
    for w in words:
        assert w in err, err
    with pytest.raises(ConfigError):
        RunConfig.from_file(cfg)


def test_missing_config_file_and_no_input(tmp_path, capsys):
    assert main(["unmix", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err
    (tmp_path / "empty.toml").write_text("seed = 1\n")
    assert main(["unmix", "--config", str(tmp_path / "empty.toml")]) == 2
    assert "no input file" in capsys.readouterr().err


def test_library_refuses_unknown_options_before_work():
    with pytest.raises(ValueError, match="quantify.thicknes"):
        unmix("never_read.hspy", quantify_options={"thicknes": 80.0})
    with pytest.raises(ValueError, match="seed"):
        unmix("never_read.hspy", seed=-1)


def test_folder_names_of_equal_stems():
    assert folder_names(["a/x.bcf", "b/y.emd"]) == ["x", "y"]
    assert folder_names(["a/x.bcf", "b/x.emd"]) == ["x_bcf", "x_emd"]
    assert folder_names(["a/x.hspy", "b/x.hspy", "x.bcf"]) == ["x_hspy_1", "x_hspy_2", "x_bcf"]
    assert folder_names(["index.hspy", "index.html.hspy"]) == ["index", "index.html_1"]


def test_batch_with_a_bad_file_and_equal_stems(tmp_path, capsys):
    good1 = _save(tmp_path / "d1" / "s.hspy", seed=0)
    good2 = _save(tmp_path / "d2" / "s.hspy", seed=1)
    bad = tmp_path / "bad.hspy"
    bad.write_text("not a spectrum image")
    out = tmp_path / "OUT"
    code = main(["unmix", str(good1), str(bad), str(good2), "-o", str(out), "--quiet", *FAST])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 not" in err and str(bad) in err and "failed" in err
    index = json.loads((out / "index.json").read_text())
    assert index["n_files"] == 3 and index["status"] == {"done": 2, "failed": 1}
    rows = {Path(r["file"]).resolve(): r for r in index["files"]}
    assert rows[bad]["status"] == "failed" and "bad.hspy" in rows[bad]["error"]
    assert rows[bad]["files"] == {} and not (out / "bad").exists()
    for src, name in ((good1, "s_hspy_1"), (good2, "s_hspy_2")):
        row = rows[src]
        assert row["folder"] == name and row["status"] == "done"
        assert (row["n_components"], row["bin_factor"]) == (3, 4)
        assert row["heldout_deviance"]["psnmf"] < row["heldout_deviance"]["raw"]
        assert row["time_s"] > 0 and row["residuals_structured"] is False
        assert row["files"] == {"report": f"{name}/report.html",
                                "summary": f"{name}/summary.json",
                                "config": f"{name}/config.toml"}
        assert all((out / p).is_file() for p in row["files"].values())
        cfg = tomllib.loads((out / name / "config.toml").read_text())
        assert cfg["files"] == [str(src.resolve())] and cfg["max_iter"] == 150
    page = (out / "index.html").read_text()
    assert 'href="s_hspy_1/report.html"' in page and 'href="s_hspy_2/summary.json"' in page
    assert "failed" in page and "bad.hspy" in page and "<script" not in page
    assert "http" not in page  # self-contained
    assert page.count("within noise") == 2  # the residuals column, one per finished run
    # an earlier batch is not overwritten without --overwrite, and refused before any work
    assert main(["unmix", str(good1), str(good2), "-o", str(out), "--quiet", *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_batch_refusals(tmp_path, capsys):
    a, b = tmp_path / "a.hspy", tmp_path / "b.hspy"
    assert main(["unmix", str(a), str(b), "--quiet"]) == 2
    assert "-o OUT" in capsys.readouterr().err
    assert main(["unmix", str(a), str(tmp_path / "." / "a.hspy"), "-o", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "more than once" in capsys.readouterr().err


def test_k_factor_tables_round_trip():
    from psnmf.quantify import KFactors

    for given in ({"Fe": 1.2, "O": 2.0},
                  KFactors({"Fe": 1.2, "O": 2.0}, basis="weight", relative_sd={"Fe": 0.05})):
        cfg = RunConfig.from_unmix_call({"quantify_options": {"k_factors": given}})
        again = RunConfig.from_text(cfg.to_toml())
        assert again.unmix_kwargs()["quantify_options"]["k_factors"] == given


def test_film_keys_of_the_quantification():
    """thickness_from, valences, charge_balance_sd and detector_window_known: read from
    the file, given to quantify only when set, written back, and taken from a library
    call (where None and "none" both mean no estimate, passed on as None: quantify's
    default is "auto")."""
    text = ('[quantify]\nthickness_from = "electroneutrality"\nvalences = { Fe = 3, C = -4 }\n'
            'charge_balance_sd = 0.02\ndetector_window_known = true\n')
    cfg = RunConfig.from_text(text)
    opts = cfg.unmix_kwargs()["quantify_options"]
    assert opts == {"method": "CL", "thickness_from": "electroneutrality",
                    "valences": {"Fe": 3.0, "C": -4.0}, "charge_balance_sd": 0.02,
                    "detector_window_known": True}
    again = RunConfig.from_text(cfg.to_toml())
    assert again.values == cfg.values
    assert tomllib.loads(cfg.to_toml())["quantify"]["valences"] == {"Fe": 3.0, "C": -4.0}
    default = RunConfig()
    assert default.unmix_kwargs()["quantify_options"] == {"method": "CL"}
    assert (default["quantify.thickness_from"], default["quantify.valences"],
            default["quantify.charge_balance_sd"],
            default["quantify.detector_window_known"]) == ("auto", {}, 0.01, False)
    for value in (None, "none"):
        call = RunConfig.from_unmix_call({"quantify_options": {"thickness_from": value}})
        assert call.unmix_kwargs()["quantify_options"]["thickness_from"] is None
        assert 'thickness_from = "none"' in call.to_toml()
    call = RunConfig.from_unmix_call({"quantify_options": {"thickness_from": "auto"}})
    assert "thickness_from" not in call.unmix_kwargs()["quantify_options"]
    call = RunConfig.from_unmix_call({"quantify_options": {
        "thickness_from": "electroneutrality", "valences": {"U": 4}, "charge_balance_sd": 0}})
    assert call.unmix_kwargs()["quantify_options"]["valences"] == {"U": 4.0}
    assert call["quantify.charge_balance_sd"] == 0.0  # an exactly stoichiometric phase
    with pytest.raises(ConfigError, match="quantify.valences"):
        RunConfig.from_unmix_call({"quantify_options": {"valences": {"Q": 2}}})
    assert "thickness_from = \"auto\"" in describe()
