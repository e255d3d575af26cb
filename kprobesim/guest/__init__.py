"""What kprobesim reads out of a Linux kernel it did not build: the kallsyms tables
(:mod:`.kallsyms`), the ``.BTF`` blob (:mod:`.btf`) and the vmlinux inside a boot image
(:mod:`.kimage`). Everything works on plain bytes (an image file or a dump of guest memory)."""
