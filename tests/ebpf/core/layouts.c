/* CO-RE relocations of every kind against target_types.c, from a local layout that differs
 * (reordered members, bitfields in another order, a narrower field, flavors). With -DNATIVE the
 * same programs are compiled against the target layout itself (clang computes the offsets). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#ifdef NATIVE
#include "target_types.c"
#define L(x) x
#define BF(s, f) (s)->f
#define e64___l e64
#define BIG___l BIG
#define SMALL___l SMALL
#else
#define L(x) x##___l
#define BF(s, f) BPF_CORE_READ_BITFIELD(s, f)
struct inner___l { int b; int a; } __attribute__((preserve_access_index));
struct tgt___l {
	struct inner___l arr[4];
	unsigned int bf2: 10, bf1: 3;
	int sbf: 5;
	short s2;
	long u_long;
	unsigned int narrow;
	int snarrow;
	long data[];
} __attribute__((preserve_access_index));
enum e64___l { BIG___l = 7, SMALL___l = 9 };
#endif
struct tgt___gone { int gone; int x; } __attribute__((preserve_access_index));
struct tm___a { int a; char *p; };
struct tm___b { long a; };
struct nope { int z; };
enum e32___l { E_B___l = 1, E_C___l = 2 };

#define P(name, expr) SEC("kprobe") __u64 name(struct L(tgt) *s) { return expr; }
P(f_x_arr, s->arr[2].a)
P(f_arr_b, s->arr[3].b)
P(f_bf1, BF(s, bf1))
P(f_bf2, BF(s, bf2))
P(f_sbf, (__u64)(long)BF(s, sbf))
P(f_s2, (__u64)(long)s->s2)
P(f_ulong, s->u_long)
P(f_narrow, s->narrow)
P(f_snarrow, s->snarrow)
P(f_data, s->data[1])
P(f_sz_arr, bpf_core_field_size(s->arr))
P(f_exists_data, bpf_core_field_exists(s->data))
SEC("kprobe") __u64 t_enum(void *c) { return bpf_core_enum_value(enum e64___l, BIG___l) ^ bpf_core_enum_value(enum e64___l, SMALL___l); }
SEC("kprobe") __u64 t_enum32(void *c) { return bpf_core_enum_value_exists(enum e32___l, E_B___l) * 10 + bpf_core_enum_value_exists(enum e32___l, E_C___l); }
SEC("kprobe") __u64 t_match(void *c) { return bpf_core_type_matches(struct tm___a) * 10 + bpf_core_type_matches(struct tm___b); }
SEC("kprobe") __u64 t_exists(void *c) { return bpf_core_type_exists(struct nope) * 10 + bpf_core_type_exists(struct tm___a); }
SEC("kprobe") __u64 t_ids(void *c) { return bpf_core_type_id_kernel(struct tm___a) * 1000 + bpf_core_type_id_local(struct tm___b); }
SEC("kprobe") __u64 t_gone(struct tgt___gone *g) { if (bpf_core_field_exists(g->gone)) return g->gone; return bpf_core_field_exists(g->x); }
char LICENSE[] SEC("license") = "GPL";
