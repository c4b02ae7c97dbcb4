/* walk.c: a tiny freestanding program (no C library, so that its whole
   trace is its own) that asks the kernel for memory with mmap, fills it with
   a stride, sums it back, and works on a table in .bss (read-modify-write) and an
   array on its stack, and stores 8 bytes across a page boundary.  Build: gcc -O1 -static -nostdlib -fno-pie -no-pie -fno-stack-protector -o walk walk.c */

#define PAGES 8
#define WORDS (PAGES * 4096 / 8)

static long table[64];

static long syscall6(long number, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long result;
    __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return result;
}

static long run(void) {
    /* mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) */
    volatile long *heap = (volatile long *)syscall6(9, 0, PAGES * 4096, 3, 0x22, -1, 0);
    long sum = 0;
    for (int i = 0; i < WORDS; i += 8) heap[i] = i;
    for (int i = 0; i < WORDS; i += 64) sum += heap[i];
    volatile long local[16];
    for (int i = 0; i < 16; i++) local[i] = sum + i;
    for (int i = 0; i < 64; i++) table[i] += local[i % 16];
    /* An unaligned store across the boundary of the first two pages. */
    *(volatile long *)((volatile char *)heap + 4096 - 4) = sum;
    syscall6(11, (long)heap, PAGES * 4096, 0, 0, 0, 0);  /* munmap */
    return table[5] == -1;
}

void _start(void) {
    syscall6(60, run(), 0, 0, 0, 0, 0);  /* exit */
    for (;;) {}
}
