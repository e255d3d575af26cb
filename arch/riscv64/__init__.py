"""riscv64."""
