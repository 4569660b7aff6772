"""Energy models: the alloy cluster expansion (and, later, interatomic potentials)."""
