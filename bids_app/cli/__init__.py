"""Command-line interface (thin): argument parsing in ``parser``, the entry point in ``run``."""
