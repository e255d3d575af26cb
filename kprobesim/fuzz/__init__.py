"""Fuzzers: probe placement on real kernels (:mod:`.placement`), synthetic code (:mod:`.synth`)."""
