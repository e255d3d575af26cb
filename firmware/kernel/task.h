/* SPDX-License-Identifier: MIT */
/*
 * struct task: the kernel's task (thread) descriptor.
 *
 * The global pointer `current_task` points at the running task.  The simulator's eBPF helpers
 * (bpf_get_current_pid_tgid, bpf_get_current_comm) read the first three fields, so their layout
 * is part of the board contract and is the same on every architecture:
 *
 *   offset  size  field
 *        0     4  u32  pid
 *        4     4  u32  tgid       (== pid: every task is its own thread group)
 *        8    16  char comm[16]   (NUL-padded name)
 *       24     4  u32  state      (enum task_state)
 *       28     4  u32  flags      (TASK_FLAG_*)
 *       32     8  unsigned long ksp         saved kernel stack pointer while switched out
 *       40     8  unsigned long kstack_top  top of the task's kernel stack
 *       48     8  long exit_code
 *   sizeof(struct task) == 56
 *
 * Tasks (fixed table, index == scheduling order):
 *   tasks[0] pid 0 "swapper"    idle task: the boot context (kmain), runs only when nothing else can
 *   tasks[1] pid 1 "init"       the user-mode task (U-mode / PLV3 / ring 3)
 *   tasks[2] pid 2 "kworker/0"  kernel threads, preempted by the timer
 *   tasks[3] pid 3 "kworker/1"
 *   tasks[4] pid 4 "kworker/2"
 */
#ifndef KERNEL_TASK_H
#define KERNEL_TASK_H

#include "types.h"

#define TASK_COMM_LEN 16

enum task_state {
	TASK_UNUSED = 0,
	TASK_RUNNABLE = 1,
	TASK_BLOCKED = 2,
	TASK_DEAD = 3,
};

#define TASK_FLAG_KTHREAD 1u
#define TASK_FLAG_USER 2u
#define TASK_FLAG_IDLE 4u

struct task {
	u32 pid;
	u32 tgid;
	char comm[TASK_COMM_LEN];
	u32 state;
	u32 flags;
	unsigned long ksp;
	unsigned long kstack_top;
	long exit_code;
};

_Static_assert(offsetof(struct task, pid) == 0, "task.pid");
_Static_assert(offsetof(struct task, tgid) == 4, "task.tgid");
_Static_assert(offsetof(struct task, comm) == 8, "task.comm");
_Static_assert(offsetof(struct task, state) == 24, "task.state");
_Static_assert(offsetof(struct task, ksp) == 32, "task.ksp");
_Static_assert(offsetof(struct task, kstack_top) == 40, "task.kstack_top");
_Static_assert(sizeof(struct task) == 56, "sizeof(struct task)");

#define NR_TASKS 5
#define NR_KTHREADS 3
#define KSTACK_SIZE 4096

extern struct task tasks[NR_TASKS];
extern struct task *current_task;

#endif
