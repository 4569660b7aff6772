"""dismai: generative models and benchmarks for large, disordered materials."""

from dismai.structures import StructureError, StructureSet

__version__ = "0.1.0"
__all__ = ["StructureSet", "StructureError", "__version__"]
