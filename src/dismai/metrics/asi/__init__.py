"""Amorphous-silicon benchmark metrics (§6).

d_motif / cos_motif (CrystalNN fingerprints), d_rdf (g(r)), d_angle (bond angles),
pct_failed and mean_relax_steps, with the reference's pivotal bootstrap errors.
Entry points: :func:`dismai.metrics.asi.evaluate.evaluate`,
:func:`dismai.metrics.asi.reference.build_reference`, :mod:`dismai.metrics.asi.report`.
(Nothing is re-exported here, so ``dismai.metrics.asi.evaluate`` stays the module.)
"""
