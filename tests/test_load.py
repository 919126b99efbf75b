"""The load step: a file's counts read once, lazily, into a sparse matrix; raw line maps
from those counts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from psnmf import hyperspy as signals
from psnmf.pipeline import steps
from psnmf.pipeline.load import load
from psnmf.simulate import mantle


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("load") / "mantle.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signal = mantle("medium", seed=0, shape=(24, 20)).to_signal()
        signal.save(path)
    return path, signal


def test_a_file_is_loaded_lazily_and_its_counts_are_the_cropped_data(saved):
    path, signal = saved
    notes: list[str] = []
    loaded = load(path, None, None, notes)
    assert loaded.signal._lazy  # the dense cube is never computed
    assert loaded.image_shape == (24, 20)
    axis = loaded.signal.axes_manager.signal_axes[0]
    assert loaded.counts.shape == (24 * 20, axis.size)
    assert axis.offset >= 0.2 - 1e-9  # the default range drops the zero-energy peak
    eager = signal.isig[axis.offset:axis.offset + axis.size * axis.scale]
    expected, _, _ = signals.as_counts(eager, None)
    assert expected.shape == loaded.counts.shape
    assert (expected != loaded.counts).nnz == 0
    same = load(signal, None, None, [])  # a signal passed in gives the same counts
    assert (same.counts != loaded.counts).nnz == 0


def test_raw_line_maps_from_the_counts_equal_exspy_get_lines_intensity(saved):
    path, _ = saved
    loaded = load(path, None, None, [])
    lines, _ = steps.lines_in_range(loaded.signal)
    assert lines
    mine = steps._count_line_maps(loaded, lines)
    theirs = loaded.signal.get_lines_intensity(
        xray_lines=lines, integration_windows=steps.INTEGRATION_WINDOWS, only_one=True)
    for line, m in zip(lines, theirs, strict=True):
        np.testing.assert_array_equal(mine[line], np.asarray(m.data, dtype=float))
