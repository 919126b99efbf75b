"""The numerical engine of PSNMF: arrays in, arrays out.

Poisson NMF (:mod:`~psnmf.engine.poisson_nmf`) and its sparse kernels, spatial binning
(:mod:`~psnmf.engine.binning`), the pure-pixel correction of the binned-stage spectra
(:mod:`~psnmf.engine.pure_pixels`), the two stages of PSNMF as array functions
(:mod:`~psnmf.engine.two_stage`), total-variation maps (:mod:`~psnmf.engine.tv_maps`) and
the chunked Dask path (:mod:`~psnmf.engine._dask`). No module here imports the estimator.

Input is validated once, where it enters: by the estimator (:func:`psnmf.hyperspy.as_counts`)
and by the public NMF entry points :func:`~psnmf.engine.poisson_nmf.poisson_nmf` and
:func:`~psnmf.engine.poisson_nmf.solve_abundances`; the layers below pass the validated CSR
counts on with ``check_input=False`` (a cheap format test instead of a pass over the data).
"""
