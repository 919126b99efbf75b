"""The numerical engine of PSNMF: arrays in, arrays out.

Poisson NMF (:mod:`~psnmf.engine.poisson_nmf`) and its sparse kernels, spatial binning
(:mod:`~psnmf.engine.binning`), total-variation maps (:mod:`~psnmf.engine.tv_maps`) and the
chunked Dask path. No module here imports the estimator.
"""
