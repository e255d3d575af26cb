"""Per-architecture packages, installed from the top-level ``arch/`` folder."""
