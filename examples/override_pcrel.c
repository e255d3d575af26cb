// SPDX-License-Identifier: MIT
/*
 * Make pcrel_load() return a wrong value: bpf_override_return() on a kprobe at the function's
 * entry sets the return value and returns to the caller without running the function.  The
 * kernel's self-check notices: it prints "FAIL: check 5 (pcrel_load)" and exits with status 5.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

#define FAKE 0x5eed5eed5eedULL

u64 overridden;

SEC("kprobe/pcrel_load")
int BPF_KPROBE(fake_pcrel_load)
{
	u64 caller;

	if (overridden++ == 0) {
#if defined(__TARGET_ARCH_x86)
		bpf_probe_read_kernel(&caller, sizeof(caller), (void *)PT_REGS_SP(ctx));
#else
		caller = PT_REGS_RET(ctx);	/* ra */
#endif
		bpf_printk("pcrel_load() called from %pS: returning %llx", (void *)caller, FAKE);
	}
	bpf_override_return(ctx, FAKE);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
