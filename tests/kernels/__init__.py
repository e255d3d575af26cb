"""Third-party kernels built or fetched at test time (nothing of theirs is committed)."""
