// SPDX-License-Identifier: MIT
/* The C probe targets the simulator's tests attach to (see firmware/README.md). */
#include "kernel.h"

/* A small mixing loop: depends on both arguments, cheap, deterministic. */
__probe_target long do_work(long a, long b)
{
	long r = a;

	for (long i = 0; i < 8; i++)
		r = r * 3 + (b ^ i);
	return r;
}

__probe_target long fib(long n)
{
	if (n < 2)
		return n;
	return fib(n - 1) + fib(n - 2);
}

__probe_target long sum_array(const long *a, long n)
{
	long s = 0;

	for (long i = 0; i < n; i++)
		s += a[i];
	return s;
}

/* Called through indirect_first (a register-indirect tail call): fn(fn, x). */
__probe_target long indirect_target(void *self, long x)
{
	return x * 7 + (self == (void *)indirect_target ? 1 : 1000);
}
