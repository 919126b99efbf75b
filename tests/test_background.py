"""Figures drawn in forked processes (psnmf.report.background): same files as drawn in
the parent, failures surfacing in the parent, children stopped when a run fails."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from psnmf import io
from psnmf.report.background import FigureJob, draw_in_background

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _figure_job(path: Path, seed: int) -> FigureJob:
    def draw() -> Path:
        fig = Figure(figsize=(2, 2), dpi=50)
        fig.subplots().imshow(np.random.default_rng(seed).random((8, 8)))
        return io.savefig(fig, path)

    return FigureJob(path.stem, draw)


def _jobs(folder: Path, n: int = 4) -> list[FigureJob]:
    return [_figure_job(folder / f"fig{i}.png", i) for i in range(n)]


@fork_only
def test_children_write_the_same_figures_as_the_parent(tmp_path):
    forked, serial = tmp_path / "forked", tmp_path / "serial"
    forked.mkdir()
    serial.mkdir()
    pending = draw_in_background(_jobs(forked), workers=2)
    assert len(pending.children) == 2
    got = pending.result()
    want = draw_in_background(_jobs(serial), workers=1).result()
    assert sorted(got) == sorted(want) == [f"fig{i}" for i in range(4)]
    for key in got:
        assert got[key].parent == forked
        assert got[key].read_bytes() == want[key].read_bytes()


@fork_only
def test_a_figure_that_fails_in_a_child_raises_in_the_parent(tmp_path):
    calls_here = []

    def broken() -> Path:
        calls_here.append(os.getpid())
        raise ValueError("cannot draw this")

    jobs = [*_jobs(tmp_path, 2), FigureJob("broken", broken, cost=5.0)]
    pending = draw_in_background(jobs, workers=2)
    with pytest.raises(ValueError, match="cannot draw this"):
        pending.result()
    assert calls_here == [os.getpid()]  # drawn again here (the child's call is not seen)
    assert (tmp_path / "fig0.png").exists() and (tmp_path / "fig1.png").exists()


@fork_only
def test_a_job_without_figure_and_a_dead_child(tmp_path):
    def nothing() -> None:
        return None

    def die() -> Path:
        os._exit(3)  # a child killed mid-way: its figure is drawn by the parent

    marker = tmp_path / "drawn_in_parent.png"

    def die_in_child_only() -> Path:
        if os.getpid() != parent:
            die()
        return _figure_job(marker, 0).draw()

    parent = os.getpid()
    jobs = [FigureJob("none", nothing), FigureJob("dies", die_in_child_only, cost=3.0),
            *_jobs(tmp_path, 1)]
    got = draw_in_background(jobs, workers=2).result()
    assert "none" not in got
    assert got["dies"] == marker and marker.exists()
    assert got["fig0"].exists()


@fork_only
def test_cancel_stops_the_children(tmp_path):
    def slow() -> Path:
        time.sleep(30)
        return tmp_path / "never.png"

    pending = draw_in_background([FigureJob("a", slow), FigureJob("b", slow)], workers=2)
    pids = [pid for pid, _ in pending.children]
    t0 = time.perf_counter()
    pending.cancel()
    assert time.perf_counter() - t0 < 10
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped
    assert pending.children == []
