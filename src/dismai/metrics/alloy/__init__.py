"""Alloy (Fe-Ni-Cr FCC) benchmark: lattice matching, cluster statistics, metrics."""
