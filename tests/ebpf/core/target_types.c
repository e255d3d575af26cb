/* Target "kernel" types for the CO-RE tests: bitfields, an anonymous union, arrays, a flexible
 * array, enum64, and flavors that agree or disagree. Compiled with -g, its .BTF is the target. */
/* target kernel types */
struct inner { int a; int b; };
struct tgt {
	int x;
	union { long u_long; struct { short s1; short s2; }; };
	unsigned int bf1: 3, bf2: 10, bf3: 19;
	int sbf: 5;
	struct inner arr[4];
	char name[8];
	unsigned short narrow;
	short snarrow;
	long data[];
};
enum e64 { SMALL = 1, BIG = 0x100000000ULL };
enum e32 { E_A = 5, E_B = 6 };
struct amb { int a; int b; };
struct amb___v2 { int b; int a; };
struct agree { int a; };
struct agree___v2 { int a; long c; };
struct tm { int a; char *p; };
struct tgt t; enum e64 e; enum e32 e2; struct amb a1; struct amb___v2 a2; struct agree g1; struct agree___v2 g2; struct tm tm;
