"""loongarch64."""
