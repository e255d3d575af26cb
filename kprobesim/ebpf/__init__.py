"""The eBPF engine: ISA, assembler, verifier, interpreter, translator, maps, BTF, and the
kprobe side (helpers bound to a machine, the object loader, trace and map output).

Load an object into a machine with ``machine.load_bpf(path)`` (:func:`kprobesim.ebpf.loader.load`);
run bpf_conformance files with :func:`kprobesim.ebpf.conformance.run_files`.
"""
