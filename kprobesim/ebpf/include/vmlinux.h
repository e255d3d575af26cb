/* SPDX-License-Identifier: MIT */
/*
 * kprobesim's vmlinux.h: the kernel types an eBPF program for the simulator needs.
 *
 * Select the architecture with -D__TARGET_ARCH_riscv, -D__TARGET_ARCH_loongarch or
 * -D__TARGET_ARCH_x86 (the same macros libbpf's bpf_tracing.h uses).  struct pt_regs has exactly
 * Linux's layout for that architecture, so PT_REGS_PARMn()/PT_REGS_RC()/PT_REGS_IP() read the
 * right fields.  struct task is the firmware's task structure.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#if !defined(__TARGET_ARCH_riscv) && !defined(__TARGET_ARCH_loongarch) && \
	!defined(__TARGET_ARCH_x86)
#error "define one of __TARGET_ARCH_riscv, __TARGET_ARCH_loongarch, __TARGET_ARCH_x86"
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;

typedef __u16 __le16;
typedef __u16 __be16;
typedef __u32 __le32;
typedef __u32 __be32;
typedef __u64 __le64;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef __u16 __sum16;

typedef _Bool bool;
enum { false = 0, true = 1 };

typedef long __kernel_long_t;
typedef unsigned long __kernel_ulong_t;
typedef __kernel_ulong_t __kernel_size_t;
typedef __kernel_long_t __kernel_ssize_t;
typedef __kernel_size_t size_t;
typedef __kernel_ssize_t ssize_t;
typedef int pid_t;
typedef unsigned long uintptr_t;
typedef long intptr_t;

#ifndef NULL
#define NULL ((void *)0)
#endif

/* enum bpf_map_type (the numbering of include/uapi/linux/bpf.h) */
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_CGROUP_ARRAY = 8,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_STACK = 23,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_BLOOM_FILTER = 30,
};

/* bpf_map_update_elem() flags */
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_LOCK = 4,
};

/* map_flags */
enum {
	BPF_F_NO_PREALLOC = (1U << 0),
	BPF_F_NO_COMMON_LRU = (1U << 1),
	BPF_F_NUMA_NODE = (1U << 2),
	BPF_F_RDONLY = (1U << 3),
	BPF_F_WRONLY = (1U << 4),
	BPF_F_STACK_BUILD_ID = (1U << 5),
	BPF_F_ZERO_SEED = (1U << 6),
	BPF_F_RDONLY_PROG = (1U << 7),
	BPF_F_WRONLY_PROG = (1U << 8),
	BPF_F_CLONE = (1U << 9),
	BPF_F_MMAPABLE = (1U << 10),
};

/* bpf_get_stackid() / bpf_get_stack() flags */
enum {
	BPF_F_SKIP_FIELD_MASK = 0xffULL,
	BPF_F_USER_STACK = (1ULL << 8),
	BPF_F_FAST_STACK_CMP = (1ULL << 9),
	BPF_F_REUSE_STACKID = (1ULL << 10),
	BPF_F_USER_BUILD_ID = (1ULL << 11),
};

/* bpf_perf_event_output() flags */
#define BPF_F_INDEX_MASK 0xffffffffULL
#define BPF_F_CURRENT_CPU BPF_F_INDEX_MASK

/* bpf_ringbuf_output()/submit()/discard() and bpf_ringbuf_query() flags */
enum {
	BPF_RB_NO_WAKEUP = (1ULL << 0),
	BPF_RB_FORCE_WAKEUP = (1ULL << 1),
};
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

#if defined(__TARGET_ARCH_riscv)

/* arch/riscv/include/asm/ptrace.h: 288 bytes */
struct pt_regs {
	unsigned long epc;
	unsigned long ra;
	unsigned long sp;
	unsigned long gp;
	unsigned long tp;
	unsigned long t0;
	unsigned long t1;
	unsigned long t2;
	unsigned long s0;
	unsigned long s1;
	unsigned long a0;
	unsigned long a1;
	unsigned long a2;
	unsigned long a3;
	unsigned long a4;
	unsigned long a5;
	unsigned long a6;
	unsigned long a7;
	unsigned long s2;
	unsigned long s3;
	unsigned long s4;
	unsigned long s5;
	unsigned long s6;
	unsigned long s7;
	unsigned long s8;
	unsigned long s9;
	unsigned long s10;
	unsigned long s11;
	unsigned long t3;
	unsigned long t4;
	unsigned long t5;
	unsigned long t6;
	unsigned long status;
	unsigned long badaddr;
	unsigned long cause;
	unsigned long orig_a0;
};

/* arch/riscv/include/uapi/asm/ptrace.h: the first 32 words of pt_regs (pc == epc) */
struct user_regs_struct {
	unsigned long pc;
	unsigned long ra;
	unsigned long sp;
	unsigned long gp;
	unsigned long tp;
	unsigned long t0;
	unsigned long t1;
	unsigned long t2;
	unsigned long s0;
	unsigned long s1;
	unsigned long a0;
	unsigned long a1;
	unsigned long a2;
	unsigned long a3;
	unsigned long a4;
	unsigned long a5;
	unsigned long a6;
	unsigned long a7;
	unsigned long s2;
	unsigned long s3;
	unsigned long s4;
	unsigned long s5;
	unsigned long s6;
	unsigned long s7;
	unsigned long s8;
	unsigned long s9;
	unsigned long s10;
	unsigned long s11;
	unsigned long t3;
	unsigned long t4;
	unsigned long t5;
	unsigned long t6;
};

#elif defined(__TARGET_ARCH_loongarch)

/* arch/loongarch/include/asm/ptrace.h: 320 bytes */
struct pt_regs {
	unsigned long regs[32];	/* r0..r31: ra = r1, sp = r3, a0..a7 = r4..r11, fp = r22 */
	unsigned long orig_a0;
	unsigned long csr_era;
	unsigned long csr_badvaddr;
	unsigned long csr_crmd;
	unsigned long csr_prmd;
	unsigned long csr_euen;
	unsigned long csr_ecfg;
	unsigned long csr_estat;
};

/* arch/loongarch/include/uapi/asm/ptrace.h */
struct user_pt_regs {
	unsigned long regs[32];
	unsigned long orig_a0;
	unsigned long csr_era;
	unsigned long csr_badv;
	unsigned long reserved[10];
};

#elif defined(__TARGET_ARCH_x86)

/* arch/x86/include/asm/ptrace.h (x86_64): 168 bytes */
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};

#endif

_Static_assert(sizeof(unsigned long) == 8, "eBPF longs are 64-bit");
#if defined(__TARGET_ARCH_riscv)
_Static_assert(sizeof(struct pt_regs) == 288, "riscv64 pt_regs");
#elif defined(__TARGET_ARCH_loongarch)
_Static_assert(sizeof(struct pt_regs) == 320, "loongarch64 pt_regs");
#else
_Static_assert(sizeof(struct pt_regs) == 168, "x86_64 pt_regs");
#endif

/* The simulated firmware's task structure (what the "current task" pointer refers to). */
struct task {
	u32 pid;	/* offset 0 */
	u32 tgid;	/* offset 4 */
	char comm[16];	/* offset 8 */
};

#endif /* __VMLINUX_H__ */
