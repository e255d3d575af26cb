"""kprobesim: kprobes and eBPF on real kernel images under CPU emulation."""

__version__ = "0.1.0"
