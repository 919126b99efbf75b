"""The HTML report of a real file: it fetches nothing from outside its folder, every figure
(a PNG file beside it) renders in headless Chromium, and a click on a map shows that pixel's
spectrum."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from psnmf.pipeline import unmix

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FAST = {"max_iter": 100, "max_iter_full": 30, "progress": False}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "test_TEM_psnmf"
    result = unmix(REAL / "test_TEM.bcf", n_components=None, bin_factor="auto",
                   bins=(4, 8, 16), components=(2, 3), output_dir=out, seed=0, **FAST)
    return out, result


@pytest.fixture(scope="module")
def report_dir(report_run) -> Path:
    return report_run[0]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_is_offline_and_shows_the_figures_beside_it(report_dir):
    text = (report_dir / "report.html").read_text()
    # BokehJS is inlined (compressed): no script or style sheet is loaded from anywhere
    # (the browser test below also records every request the page makes)
    assert not re.search(r"<script[^>]*\bsrc=", text) and "<link" not in text
    markup = re.sub(r"<script\b.*?</script>", "", text, flags=re.S)  # the page without JS
    images = re.findall(r'<img [^>]*src="([^"]*)"', markup)
    assert len(images) == 11  # incl. sweep, TV-weight curve, residuals, composition maps
    # each the PNG file written beside the page, not a second (base64) copy of it
    assert all(src.endswith(".png") and "/" not in src and (report_dir / src).is_file()
               for src in images)
    assert "data:image" not in text
    assert "http://" not in markup and "https://" not in markup  # nothing fetched from outside
    for needle in ("Held-out Poisson deviance", "PCA (HyperSpy", "PSNMF (k =",
                   "Elemental maps", "scree", "Choosing k and b", "render-check",
                   "Composition of the components", "&plusmn;", "95% interval",
                   "Spatial regularisation of the maps", "chosen by held-out deviance",
                   "held-out deviance / count (binned stage)", "5-fold count splitting"):
        assert needle in text, needle  # incl. the tables of both the k and the b search


def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make test` installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium; required under CI)")
    url = (report_dir / "report.html").resolve().as_uri()
    dom = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile1'}",
         "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = re.search(r'id="render-check"[^>]*', dom.stdout)
    assert check, "the page's render check did not run"
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', check.group(0)))
    assert attrs == {"ok": "true", "images": "11", "failed": "0"}, attrs
    assert "[figures ok]" in dom.stdout

    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
         f"--screenshot={shot}", "--window-size=1400,4000", url],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (4000, 1400)
    rgb = img[..., :3]
    # not blank: plenty of non-white pixels, and colour (figures, not just text)
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.05
    assert (np.ptp(rgb, axis=-1) > 0.2).mean() > 0.005
    keep = os.environ.get("PSNMF_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_sweep_figure_shows_both_searches():
    from psnmf.report import sweep_figure
    from psnmf.selection import ModelCandidate, ModelChoice, SearchResult, Trial

    k_trials = [Trial(ModelCandidate(8, k), d, "200", 0.1, "k")
                for k, d in ((2, 5.0), (3, 4.5), (4, 4.7))]
    b_trials = [Trial(ModelCandidate(b, 3), d, "200+50", 0.1, "b")
                for b, d in ((4, 9.5), (8, 9.4), (16, 9.6))]
    choice = ModelChoice(b_search=SearchResult(b_trials, b_trials[1]),
                         k_search=SearchResult(k_trials, k_trials[1]), k_bin=8)
    ax_b, ax_k = sweep_figure(choice).axes
    assert [list(line.get_xdata()) for line in ax_b.lines] == [[4, 8, 16], [8]]
    assert [list(line.get_xdata()) for line in ax_k.lines] == [[2, 3, 4], [3]]
    assert list(ax_k.lines[0].get_ydata()) == [5.0, 4.5, 4.7]


def test_a_click_on_a_map_of_the_real_file_shows_that_pixels_spectrum(report_run):
    """Single pixels (the counts are sparse enough), in a real browser, without errors."""
    from test_interactive_report import Page, _expected, launch_browser

    from psnmf.report import explorer

    out, result = report_run
    data = explorer.explorer_data(result)
    assert (data.counts.r, data.counts.encoding) == (1, "sparse")
    with launch_browser() as browser:
        page = Page(browser, out / "report.html")
        for figure, (ix, iy) in (("component_figure:0", (3, 60)),
                                 ("element_figure:Cu_Ka", (40, 12))):
            page.click_pixel(figure, ix, iy)
            raw, model = _expected(result, 1, data.counts.c, iy, ix)
            got = page.spectrum()
            np.testing.assert_array_equal(got["raw"], raw)
            np.testing.assert_allclose(got["model"], model, rtol=1e-4)
        page.close()
