"""Li3ScCl6-LiCoO2 interface benchmark metrics (§7).

d_Li / d_Co / d_Sc / d_all (and cos_*) between mean cation CrystalNN fingerprints
(109 features, Cl/O neighbours only), pct_failed, mean_relax_steps, interface-energy
histograms and the most-likely motif breakdown by O neighbours (paper Fig. 9).
Entry points: :func:`dismai.metrics.interface.evaluate.evaluate`,
:func:`dismai.metrics.interface.reference.build_reference`,
:mod:`dismai.metrics.interface.report`.
"""
