"""BIDS-derivatives output: file names, atomic writes, sidecars, dataset description, provenance."""

from .writer import DerivativesWriter, atomic_write_text

__all__ = ["DerivativesWriter", "atomic_write_text"]
