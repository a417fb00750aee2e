"""FinOps hub: Cost Management exports in, a FOCUS-aligned Parquet lake out."""

__version__ = "0.1.0"
