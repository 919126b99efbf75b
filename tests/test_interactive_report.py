"""The interactive report: the data it embeds, and real clicks in headless Chromium.

The browser tests drive Debian's chromium through Playwright (``executable_path``, so
Playwright downloads no browser); they skip when chromium or Playwright is missing, except
under CI where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf.report import explorer, html

FAST = {"max_iter": 100, "max_iter_full": 30, "progress": False}
SHAPE = (40, 56)
#: A budget that forces 3 x 3-pixel regions (partial at the edges) on the small result,
#: and a map side that forces 3 x 3 display blocks.
SMALL_BUDGET, SMALL_SIDE = 270_000, 20


# ---------------------------------------------------------------------------------------
# the data the page embeds (no browser)
# ---------------------------------------------------------------------------------------
def _brute_regions(cube: np.ndarray, r: int, c: int) -> np.ndarray:
    ny, nx, ne = cube.shape
    out = []
    for y0 in range(0, ny, r):
        for x0 in range(0, nx, r):
            s = cube[y0:y0 + r, x0:x0 + r].sum(axis=(0, 1))
            out.append([s[i:i + c].sum() for i in range(0, ne, c)])
    return np.array(out)


@pytest.mark.parametrize("budget", [10**7, 4000, 1500, 300])
def test_region_counts_match_brute_force(budget):
    rng = np.random.default_rng(0)
    cube = rng.poisson(0.05, size=(13, 10, 23)).astype(np.int32)
    cube[3, 4, 5] = 70_000  # needs uint32 where single pixels are kept
    rc = explorer.region_counts(cube, (13, 10), cube.sum(), budget=budget, max_channels=8)
    assert rc.c == 3 and rc.n_channels == 8
    assert rc.nbytes <= budget
    want = _brute_regions(cube, rc.r, rc.c)
    assert rc.grid == (-(-13 // rc.r), -(-10 // rc.r))
    got = np.array([rc.region(gy, gx) for gy in range(rc.grid[0]) for gx in range(rc.grid[1])])
    np.testing.assert_array_equal(got, want)


def test_region_counts_choose_sparse_for_sparse_data_and_dense_otherwise():
    rng = np.random.default_rng(1)
    sparse_cube = rng.poisson(0.01, size=(32, 32, 64))
    rc = explorer.region_counts(sparse_cube, (32, 32), sparse_cube.sum(), budget=20_000,
                                max_channels=64)
    assert (rc.r, rc.encoding, rc.values.dtype) == (1, "sparse", np.uint8)
    dense_cube = rng.poisson(5.0, size=(32, 32, 64))
    rc = explorer.region_counts(dense_cube, (32, 32), dense_cube.sum(), budget=20_000,
                                max_channels=64)
    assert rc.encoding == "dense" and rc.r > 1 and rc.nbytes <= 20_000
    np.testing.assert_array_equal(
        np.array([rc.region(gy, gx) for gy in range(rc.grid[0]) for gx in range(rc.grid[1])]),
        _brute_regions(dense_cube, rc.r, 1))


@pytest.mark.parametrize("packed", [6000, 2500])
def test_region_counts_fit_the_packed_budget_and_stay_exact(packed):
    """Where the compressed counts (and ``region_bytes`` a region) exceed the packed
    budget, the regions are merged until they fit; the sums stay those of the cube."""
    rng = np.random.default_rng(4)
    cube = rng.poisson(0.2, size=(37, 29, 40))
    free = explorer.region_counts(cube, (37, 29), cube.sum(), max_channels=40,
                                  packed_budget=None)
    rc = explorer.region_counts(cube, (37, 29), cube.sum(), max_channels=40,
                                packed_budget=packed, region_bytes=12)
    regions = rc.grid[0] * rc.grid[1]
    assert free.r == 1 and rc.r > 1
    assert rc.packed_nbytes + 12 * regions <= packed
    got = np.array([rc.region(gy, gx) for gy in range(rc.grid[0]) for gx in range(rc.grid[1])])
    np.testing.assert_array_equal(got, _brute_regions(cube, rc.r, 1))


def test_region_counts_of_a_dask_cube_equal_those_of_numpy():
    import dask.array as da

    rng = np.random.default_rng(2)
    cube = rng.poisson(0.3, size=(17, 9, 30))
    lazy = da.from_array(cube, chunks=(5, 9, 30))
    for budget in (10**6, 800):
        a = explorer.region_counts(cube, (17, 9), cube.sum(), budget=budget, max_channels=10)
        b = explorer.region_counts(lazy, (17, 9), cube.sum(), budget=budget, max_channels=10)
        assert (a.r, a.encoding) == (b.r, b.encoding)
        np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("budget", [10**7, 4000, 1500, 300])
def test_region_counts_from_the_counts_read_equal_those_of_the_signal(budget):
    """The counts the run read (float64 CSR, pixels x channels) give the same regions,
    encoding and values as reading the cube again, whichever route the budget takes."""
    rng = np.random.default_rng(3)
    cube = rng.poisson(0.05, size=(13, 10, 23)).astype(np.int32)
    cube[3, 4, 5] = 70_000
    X = sp.csr_matrix(cube.reshape(130, 23).astype(np.float64))
    a = explorer.region_counts(cube, (13, 10), cube.sum(), budget=budget, max_channels=8)
    b = explorer.region_counts(cube, (13, 10), cube.sum(), budget=budget, max_channels=8,
                               counts=X)
    assert (a.r, a.c, a.encoding, a.values.dtype) == (b.r, b.c, b.encoding, b.values.dtype)
    for f in ("values", "indices", "indptr"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or np.array_equal(x, y)


def test_display_image_averages_blocks_including_partial_edges():
    a = np.arange(5 * 7, dtype=float).reshape(5, 7)
    d = explorer.display_image(a, 3)
    assert d.shape == (2, 3) and d.dtype == np.float32
    assert d[1, 2] == pytest.approx(a[3:, 6:].mean())
    assert d[0, 0] == pytest.approx(a[:3, :3].mean())
    assert explorer.display_factor((512, 512), 256) == 2
    assert explorer.display_factor((100, 64), 256) == 1


# ---------------------------------------------------------------------------------------
# a small simulated run (dense counts, a shape no region side divides)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    import psnmf.simulate
    from psnmf.pipeline import unmix

    signal = psnmf.simulate.mantle("medium", seed=0, shape=SHAPE).to_signal()
    out = tmp_path_factory.mktemp("interactive") / "sim"
    result = unmix(signal, n_components=3, bin_factor=4, smoothing=None, n_boot=2,
                   output_dir=out, seed=0, **FAST)
    binned = out / "report_binned.html"
    figures = {k: Path(v) for k, v in result.paths.items() if k.endswith("_figure")}
    binned.write_text(html.build_html(result, figures, raw_budget=SMALL_BUDGET,
                                      max_image_side=SMALL_SIDE), encoding="utf-8")
    return result, out


def test_explorer_model_is_the_fused_model_summed_over_the_region(small_run):
    from psnmf.report.interactive import spectrum_columns

    result, _ = small_run
    data = explorer.explorer_data(result, budget=SMALL_BUDGET, max_side=SMALL_SIDE)
    r, c = data.counts.r, data.counts.c
    assert r == 3 and data.d == 3 and data.counts.nbytes <= SMALL_BUDGET
    m = result.model
    iy, ix = 39, 55  # the corner region is partial (1 x 2 pixels)
    y0, x0 = (iy // r) * r, (ix // r) * r
    w = (m.maps_ * m.scale_[..., None])[y0:y0 + r, x0:x0 + r].sum(axis=(0, 1))
    model = explorer.group_channels(w @ m.spectra_, c)
    raw = explorer.group_channels(
        np.asarray(result.signal.data)[y0:y0 + r, x0:x0 + r].sum(axis=(0, 1)), c)
    cols = spectrum_columns(data, iy, ix)
    np.testing.assert_array_equal(cols["raw"], raw)
    np.testing.assert_allclose(cols["model"], model, rtol=1e-5)
    np.testing.assert_allclose(sum(cols[f"c{j}"] for j in range(3)), cols["model"], rtol=1e-6)
    assert data.component_maps[0].shape == (14, 19)


def test_report_is_built_from_the_template(small_run):
    _, out = small_run
    text = (out / "report.html").read_text()
    assert "<script src=" not in text and "<link " not in text  # everything inline
    assert text.count('data-root-id="') == 2  # the explorer and the elemental maps
    for needle in ("Explore the maps and spectra", 'id="composition-table"',
                   'id="budget-table"', 'class="sortable"', "Error budget",
                   "Held-out Poisson deviance", "k and b were given; no sweep was run."):
        assert needle in text, needle


# ---------------------------------------------------------------------------------------
# headless Chromium, driven by Playwright
# ---------------------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def launch_browser():
    """Debian's chromium under Playwright; skips (fails under CI) when either is missing."""
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        exe = None
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and playwright are needed; `make test` installs chromium")
        pytest.skip("chromium or playwright not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


class Page:
    """A report opened in a fresh page, with every console error, page error and request
    for anything but the file itself, a PNG file beside it (its figures) or a
    ``data:``/``blob:`` URI recorded."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1300, "height": 1000})
        self.errors: list[str] = []
        self.requests: list[str] = []
        folder = path.resolve().parent.as_uri() + "/"

        def allowed(url: str) -> bool:
            beside = url.startswith(folder) and "/" not in url[len(folder):]
            return (url.startswith(("data:", "blob:")) or url == path.resolve().as_uri()
                    or (beside and url.endswith(".png")))

        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url[:100]}"))
        self.page.on("request", lambda r: None if allowed(r.url)
                     else self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("#interactive-check[data-ok=true]", state="attached",
                                    timeout=30_000)
        self.page.wait_for_selector("#render-check[data-ok=true]", state="attached")

    def model(self, name: str, prop: str):
        return self.page.evaluate(
            "([n, p]) => { const v = Bokeh.documents[0].get_model_by_name(n)[p];"
            " return Array.isArray(v) || ArrayBuffer.isView(v) ? Array.from(v) : v; }",
            [name, prop])

    def click_pixel(self, figure: str, ix: int, iy: int) -> None:
        """A real mouse click at the screen position of pixel (ix, iy) of a map."""
        x, y = self.page.evaluate("""([name, x, y]) => {
            const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name));
            view.canvas_view.el.scrollIntoView({block: "center"});
            const box = view.canvas_view.el.getBoundingClientRect();
            return [box.left + view.frame.x_scale.compute(x),
                    box.top + view.frame.y_scale.compute(y)];
        }""", [figure, ix + 0.5, iy + 0.5])
        self.page.mouse.click(x, y)
        self.page.wait_for_function(
            "([x, y]) => Bokeh.documents[0].get_model_by_name('region_info').text"
            ".includes(`data-x=\"${x}\" data-y=\"${y}\"`)", arg=[ix, iy], timeout=10_000)

    def spectrum(self) -> dict[str, np.ndarray]:
        data = self.page.evaluate(
            "() => { const d = Bokeh.documents[0].get_model_by_name('region_spectrum').data;"
            " const o = {}; for (const [k, v] of (d instanceof Map ? d : Object.entries(d)))"
            " o[k] = Array.from(v); return o; }")
        return {k: np.asarray(v, dtype=float) for k, v in data.items()}

    def close(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests == [], f"the page fetched {self.requests}"
        self.page.close()


def _expected(result, r: int, c: int, iy: int, ix: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw counts and model of the region holding (iy, ix), straight from the result."""
    m = result.model
    y0, x0 = (iy // r) * r, (ix // r) * r
    raw = np.asarray(result.signal.data)[y0:y0 + r, x0:x0 + r].sum(axis=(0, 1))
    w = (m.maps_ * m.scale_[..., None])[y0:y0 + r, x0:x0 + r].sum(axis=(0, 1))
    return explorer.group_channels(raw, c), explorer.group_channels(w @ m.spectra_, c)


@pytest.mark.parametrize("which", ["report.html", "report_binned.html"])
def test_a_click_on_a_map_shows_that_regions_spectrum(small_run, browser, which):
    result, out = small_run
    budget = SMALL_BUDGET if "binned" in which else explorer.RAW_BUDGET_BYTES
    side = SMALL_SIDE if "binned" in which else explorer.MAX_IMAGE_SIDE
    data = explorer.explorer_data(result, budget=budget, max_side=side)
    r, c = data.counts.r, data.counts.c
    page = Page(browser, out / which)
    first = page.spectrum()  # the centre pixel's region, shown when the page is ready
    raw, model = _expected(result, r, c, SHAPE[0] // 2, SHAPE[1] // 2)
    np.testing.assert_array_equal(first["raw"], raw)
    for figure, (ix, iy) in (("component_figure:1", (5, 7)),
                             ("component_figure:2", (52, 38)),
                             ("element_figure:Fe_Ka", (20, 2))):
        page.click_pixel(figure, ix, iy)
        got = page.spectrum()
        raw, model = _expected(result, r, c, iy, ix)
        assert raw.sum() > 0 and not np.array_equal(got["raw"], first["raw"])
        np.testing.assert_array_equal(got["raw"], raw)
        np.testing.assert_allclose(got["model"], model, rtol=1e-4)
        np.testing.assert_allclose(got["raw_log"], np.maximum(raw, 0.1))
        np.testing.assert_allclose(got["energy"], data.energy, rtol=1e-6)
        info = page.page.locator(".region-info")  # the panel, inside Bokeh's shadow DOM
        assert f"x {ix}, y {iy}" in info.inner_text()
        shares = [float(t.rstrip("%")) for t in
                  info.locator("td[data-component]").all_inner_texts()]
        w = model.sum()
        comp = [_expected_component(result, r, j, iy, ix) / w * 100 for j in range(3)]
        np.testing.assert_allclose(shares, comp, atol=0.051)
        marker = page.model("region_marker", "data")
        assert marker["w"][0] == min(r, SHAPE[1] - (ix // r) * r)  # the region outlined
    page.close()


def _expected_component(result, r: int, j: int, iy: int, ix: int) -> float:
    m = result.model
    y0, x0 = (iy // r) * r, (ix // r) * r
    return float((m.maps_[..., j] * m.scale_)[y0:y0 + r, x0:x0 + r].sum())


def test_log_tab_and_element_source_buttons(small_run, browser, tmp_path):
    _, out = small_run
    page = Page(browser, out / "report.html")
    p = page.page
    tabs = p.locator(".bk-tab")
    tabs.filter(has_text="log").click()
    p.wait_for_function("() => Bokeh.documents[0].get_model_by_name('spectrum_scale')"
                        ".active === 1")
    assert page.model("element_source", "active") == 2  # PSNMF first
    for label, method in (("raw", "raw"), ("PCA", "pca"), ("PSNMF", "psnmf")):
        p.get_by_role("button", name=label, exact=True).click()
        p.wait_for_function("m => document.body.getAttribute('data-element-source') === m",
                            arg=method)
        for m in ("raw", "pca", "psnmf"):
            assert page.model(f"element_map:{m}:Fe_Ka", "visible") is (m == method)
    keep = os.environ.get("PSNMF_KEEP_SCREENSHOT")
    if keep:
        p.screenshot(path=str(Path(keep).with_suffix(".interactive.png")), full_page=True)
    page.close()


def test_tables_sort_on_a_click_on_their_header(small_run, browser):
    _, out = small_run
    page = Page(browser, out / "report.html")
    p = page.page
    table = p.locator("#budget-table")
    header = table.locator("thead th", has_text="at.%")
    column = 2

    def values():
        return [float(t) for t in
                table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()]

    before = values()
    assert len(before) > 2 and before != sorted(before)
    header.click()
    assert values() == sorted(before)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert values() == sorted(before, reverse=True)
    comp = p.locator("#composition-table")
    names = comp.locator("tbody tr td:first-child")
    original = names.all_inner_texts()
    comp.locator("thead th").first.click()
    comp.locator("thead th").first.click()
    assert names.all_inner_texts() == sorted(original, reverse=True)
    page.close()
