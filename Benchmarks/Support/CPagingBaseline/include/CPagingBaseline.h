#ifndef CPAGINGBASELINE_H
#define CPAGINGBASELINE_H
#include <stdint.h>

/// Plain-C baselines of the architectural hot paths (issue 14), written as a
/// C programmer would, for the benchmarks' ratios. See CPagingBaseline.c.

/// The paging registers a walk and a TLB hit consult.
typedef struct {
    uint64_t cr3;
    int wp, smep, smap, pke, nxe, ac;  ///< CR0.WP, CR4.SMEP/SMAP/PKE, EFER.NXE, EFLAGS.AC
    uint32_t pkru;
    int maxphyaddr;
} CPagingRegisters;

/// Access kinds and modes, as `MemoryAccess` has them.
enum { CPAGING_READ = 0, CPAGING_WRITE = 1, CPAGING_FETCH = 2 };
enum { CPAGING_SUPERVISOR = 0, CPAGING_USER = 1 };

/// A 4-level walk of `linear` over flat memory `memory` of `size` bytes:
/// canonical check, each entry inside memory, present, reserved bits (address
/// bits above MAXPHYADDR, PS in a PML4E, XD without NXE), user/writable ANDed
/// and XD ORed over the path, the permission check (CR0.WP, SMEP, SMAP with
/// EFLAGS.AC, protection keys), then A set on every entry and D on the leaf
/// of a write. Returns 0 and the physical address, or a page-fault error code
/// (bit 0 P, 1 W/R, 2 U/S, 3 RSVD, 4 I/D, 5 PK), or -1 for a #GP.
int64_t cpaging_walk4(uint8_t *memory, uint64_t size, const CPagingRegisters *registers,
                      uint64_t linear, int kind, int mode, uint64_t *physical);

/// A direct-mapped TLB of `CPAGING_TLB_ENTRIES` translations, tagged with a
/// PCID and generation counters like the model's.
#define CPAGING_TLB_ENTRIES 4096
typedef struct {
    uint64_t vpn, base;
    uint32_t generation;
    uint16_t pcid;
    uint8_t shift, key, user, writable, xd, global, dirty;
} CPagingTLBEntry;
typedef struct {
    CPagingTLBEntry slots[CPAGING_TLB_ENTRIES];
    uint32_t generation;
} CPagingTLB;

void cpaging_tlb_init(CPagingTLB *tlb);
/// Caches the translation a successful walk made (4 KiB pages).
void cpaging_tlb_insert(CPagingTLB *tlb, uint64_t linear, uint64_t physical, int user, int writable, int xd, int dirty, int key, int pcid);
/// A TLB hit: canonical check, the slot's tag, and the permission check of
/// the moment (a write needs D). Returns 1 and the physical address, else 0.
int cpaging_tlb_translate(CPagingTLB *tlb, const CPagingRegisters *registers, uint64_t linear, int kind, int mode, int pcid, uint64_t *physical);

/// The benchmark guest of `X86PagingBenchmarks`: 512 user-writable 4 KiB pages
/// at linear 0x40000000 under one page table, in a flat memory of `size` bytes
/// (at least 16 MiB). Returns CR3.
uint64_t cpaging_build_benchmark_guest(uint8_t *memory, uint64_t size);

/// `count` walks over the guest's 512 pages, reads; returns the sum of the
/// physical addresses (so that nothing is optimized away).
uint64_t cpaging_walk_loop(uint8_t *memory, uint64_t size, const CPagingRegisters *registers, uint64_t count);
/// `count` TLB-hit reads over `pages` hot pages (a power of two); returns
/// the address sum.
uint64_t cpaging_tlb_hit_loop(CPagingTLB *tlb, const CPagingRegisters *registers, uint64_t pages, uint64_t count);

#endif
