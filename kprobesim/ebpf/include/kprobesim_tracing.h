/* SPDX-License-Identifier: MIT */
/*
 * kprobesim_tracing.h: libbpf's bpf_tracing.h plus the LoongArch PT_REGS_* accessors that older
 * libbpf releases (Debian's 1.1) lack.  Include after vmlinux.h and bpf_helpers.h:
 *
 *   #include "vmlinux.h"
 *   #include <bpf/bpf_helpers.h>
 *   #include "kprobesim_tracing.h"
 *
 * BPF_KPROBE()/BPF_KRETPROBE() work unchanged on every architecture since they expand to
 * PT_REGS_PARMn()/PT_REGS_RC() at their point of use.
 */
#ifndef __KPROBESIM_TRACING_H__
#define __KPROBESIM_TRACING_H__

#include <bpf/bpf_tracing.h>

#if defined(__TARGET_ARCH_loongarch) && !defined(bpf_target_loongarch)

#undef PT_REGS_PARM1
#undef PT_REGS_PARM2
#undef PT_REGS_PARM3
#undef PT_REGS_PARM4
#undef PT_REGS_PARM5
#undef PT_REGS_RET
#undef PT_REGS_FP
#undef PT_REGS_RC
#undef PT_REGS_SP
#undef PT_REGS_IP
#undef PT_REGS_PARM1_CORE
#undef PT_REGS_PARM2_CORE
#undef PT_REGS_PARM3_CORE
#undef PT_REGS_PARM4_CORE
#undef PT_REGS_PARM5_CORE
#undef PT_REGS_RET_CORE
#undef PT_REGS_FP_CORE
#undef PT_REGS_RC_CORE
#undef PT_REGS_SP_CORE
#undef PT_REGS_IP_CORE
#undef PT_REGS_PARM1_SYSCALL
#undef PT_REGS_PARM2_SYSCALL
#undef PT_REGS_PARM3_SYSCALL
#undef PT_REGS_PARM4_SYSCALL
#undef PT_REGS_PARM5_SYSCALL
#undef BPF_KPROBE_READ_RET_IP
#undef BPF_KRETPROBE_READ_RET_IP

/* struct pt_regs: regs[0..31], orig_a0, csr_era, ... (a0..a7 = r4..r11, ra = r1, fp = r22) */
#define PT_REGS_PARM1(x) (((const struct pt_regs *)(x))->regs[4])
#define PT_REGS_PARM2(x) (((const struct pt_regs *)(x))->regs[5])
#define PT_REGS_PARM3(x) (((const struct pt_regs *)(x))->regs[6])
#define PT_REGS_PARM4(x) (((const struct pt_regs *)(x))->regs[7])
#define PT_REGS_PARM5(x) (((const struct pt_regs *)(x))->regs[8])
#define PT_REGS_RET(x) (((const struct pt_regs *)(x))->regs[1])
#define PT_REGS_FP(x) (((const struct pt_regs *)(x))->regs[22])
#define PT_REGS_RC(x) (((const struct pt_regs *)(x))->regs[4])
#define PT_REGS_SP(x) (((const struct pt_regs *)(x))->regs[3])
#define PT_REGS_IP(x) (((const struct pt_regs *)(x))->csr_era)

#define PT_REGS_PARM1_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[4])
#define PT_REGS_PARM2_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[5])
#define PT_REGS_PARM3_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[6])
#define PT_REGS_PARM4_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[7])
#define PT_REGS_PARM5_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[8])
#define PT_REGS_RET_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[1])
#define PT_REGS_FP_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[22])
#define PT_REGS_RC_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[4])
#define PT_REGS_SP_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), regs[3])
#define PT_REGS_IP_CORE(x) BPF_CORE_READ((const struct pt_regs *)(x), csr_era)

/* LoongArch does not select ARCH_HAS_SYSCALL_WRAPPER */
#define PT_REGS_PARM1_SYSCALL(x) PT_REGS_PARM1(x)
#define PT_REGS_PARM2_SYSCALL(x) PT_REGS_PARM2(x)
#define PT_REGS_PARM3_SYSCALL(x) PT_REGS_PARM3(x)
#define PT_REGS_PARM4_SYSCALL(x) PT_REGS_PARM4(x)
#define PT_REGS_PARM5_SYSCALL(x) PT_REGS_PARM5(x)
#undef PT_REGS_SYSCALL_REGS
#define PT_REGS_SYSCALL_REGS(ctx) ctx

#define BPF_KPROBE_READ_RET_IP(ip, ctx) ({ (ip) = PT_REGS_RET(ctx); })
#define BPF_KRETPROBE_READ_RET_IP(ip, ctx) ({ (ip) = PT_REGS_RET(ctx); })

#endif /* __TARGET_ARCH_loongarch without libbpf support */

#endif /* __KPROBESIM_TRACING_H__ */
