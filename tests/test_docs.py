"""The documentation builds, without a single warning, with every gallery example run.

The Sphinx site under ``docs/`` (user guide, API reference from the docstrings, the
sphinx-gallery of worked examples) is built as ``make docs`` builds it
(``sphinx-build -W --keep-going -b html``), from a copy of ``docs/`` in a temporary folder
so that no generated file lands in the source tree and no stale one is reused. The examples
run during the build on simulated data: an example that raises fails the build.

About 2 minutes on two shared cores. Deselect with ``pytest -m "not docs"``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = sorted(p.stem for p in (DOCS / "examples").glob("plot_*.py"))
#: Output of earlier builds in the source tree, never copied.
GENERATED = ("_build", "generated", "auto_examples", "sg_execution_times.rst", "__pycache__")
#: The whole build must stay well inside the test suite's budget.
TIMEOUT_S = 900


def build(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns(*GENERATED))
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         str(src), str(out)],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path,
    )
    return proc, out, time.perf_counter() - t0


def test_docs_build_without_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for module in ("sphinx", "sphinx_gallery", "furo"):
        pytest.importorskip(module, reason="pip install -e '.[docs]' (part of '.[test]')")
    assert EXAMPLES, "no gallery examples under docs/examples"

    proc, out, seconds = build(tmp_path)
    assert proc.returncode == 0, (
        f"sphinx-build failed (exit {proc.returncode}):\n{proc.stderr[-8000:]}")
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-8000:]

    # every example has its page, ran (its output and figures are on it) and is in the index
    gallery = out / "auto_examples"
    index = (gallery / "index.html").read_text(encoding="utf-8")
    for name in EXAMPLES:
        page = gallery / f"{name}.html"
        assert page.is_file(), f"gallery page of {name} missing"
        html = page.read_text(encoding="utf-8")
        assert "sphx-glr-script-out" in html, f"{name}: no output captured (did it run?)"
        assert re.search(rf"sphx_glr_{name}_\d+\.png", html), f"{name}: no figure"
        assert f"{name}.html" in index, f"{name} not in the gallery index"

    # the guide, the CLI reference from the parser, the API reference from the docstrings
    for page in ("index", "api", "guide/concepts", "guide/cli", "generated/psnmf.PSNMF"):
        assert (out / f"{page}.html").is_file(), f"{page}.html missing"
    cli = (out / "guide" / "cli.html").read_text(encoding="utf-8")
    assert "usage: psnmf unmix" in cli
    api = (out / "generated" / "psnmf.PSNMF.html").read_text(encoding="utf-8")
    assert "bin_factor" in api and "reconstruct" in api

    pages = sorted(out.rglob("*.html"))
    record = (tmp_path / "docs" / "auto_examples" / "sg_execution_times.rst").read_text()
    times = re.findall(r"``(?:examples/)?(plot_\w+)\.py``\)\s*-\s*(\d+):([\d.]+)", record)
    with capsys.disabled():
        print(f"\n  docs: {len(pages)} HTML pages ({len(EXAMPLES)} gallery examples) built "
              f"without warnings in {seconds:.0f} s")
        for name, minutes, sec in sorted(times):
            print(f"    {name}: {60 * int(minutes) + float(sec):.1f} s")
