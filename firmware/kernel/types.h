/* SPDX-License-Identifier: MIT */
/* Basic types and attributes shared by the kernel and the per-arch code. */
#ifndef KERNEL_TYPES_H
#define KERNEL_TYPES_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long s64;
typedef unsigned long size_t;
typedef unsigned long uintptr_t;

#define NULL ((void *)0)

#define __noinline __attribute__((noinline))
#define __used __attribute__((used))
#define __noreturn __attribute__((noreturn))
#define __aligned(n) __attribute__((aligned(n)))
#define __section(s) __attribute__((section(s)))

/* A function the simulator's probe tests attach to: never inlined, never dropped. */
#define __probe_target __attribute__((noinline, used))

#define offsetof(type, member) __builtin_offsetof(type, member)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define barrier() __asm__ __volatile__("" ::: "memory")

/*
 * NOKPROBE(fn): record fn's address (8 bytes) in the section "kprobe_blacklist".  The linker
 * script delimits the section with __start_kprobe_blacklist / __stop_kprobe_blacklist; the
 * simulator refuses probes inside any blacklisted function.  Assembly uses the NOKPROBE macro of
 * the per-arch entry code (same section, same format).
 */
#define NOKPROBE(fn)                                                                           \
	static const unsigned long __nokprobe_##fn __attribute__((used, aligned(8),           \
								    section("kprobe_blacklist"))) = \
		(unsigned long)&fn

#endif
