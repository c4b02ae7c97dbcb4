// Plain-C baselines of the architectural hot paths (issue 14): a 4-level
// walk with the architecture's checks and accessed/dirty updates over flat
// memory, and a direct-mapped TLB hit with the permission check of the
// moment. The Swift benchmarks run the same loops through X86Paging's
// `Walker` and `ArchitecturalCPU` and report the time ratio of one run.
#include "CPagingBaseline.h"
#include <string.h>

#define P 1ull
#define RW 2ull
#define US 4ull
#define A 0x20ull
#define D 0x40ull
#define PS 0x80ull
#define XD (1ull << 63)

static inline int canonical48(uint64_t linear) {
    int64_t s = (int64_t)(linear << 16) >> 16;
    return (uint64_t)s == linear;
}

static inline int64_t base_code(int kind, int mode, const CPagingRegisters *r) {
    int64_t code = 0;
    if (kind == CPAGING_WRITE) code |= 2;
    if (kind == CPAGING_FETCH && (r->smep || r->nxe)) code |= 16;
    if (mode == CPAGING_USER) code |= 4;
    return code;
}

/// The permission check (SDM 4.6), the same rules as the walk's.
static inline int permitted(const CPagingRegisters *r, int user, int writable, int xd, int key, int kind, int mode) {
    int user_mode = mode == CPAGING_USER;
    int honours_ro = user_mode || r->wp;
    if (user_mode && !user) return 0;
    if (kind == CPAGING_WRITE && !writable && honours_ro) return 0;
    if (kind == CPAGING_FETCH) {
        if (xd) return 0;
        if (!user_mode && user && r->smep) return 0;
        return 1;
    }
    if (!user_mode && user && r->smap && !r->ac) return 0;
    if (user && r->pke) {
        uint32_t rights = r->pkru >> (2 * key);
        if ((rights & 1) || ((rights & 2) && kind == CPAGING_WRITE && honours_ro)) return 0;
    }
    return 1;
}

int64_t cpaging_walk4(uint8_t *memory, uint64_t size, const CPagingRegisters *r,
                      uint64_t linear, int kind, int mode, uint64_t *physical) {
    if (!canonical48(linear)) return -1;
    uint64_t address_mask = ((1ull << r->maxphyaddr) - 1) & ~0xfffull;
    uint64_t reserved = ~((1ull << r->maxphyaddr) - 1) & ~XD;
    if (!r->nxe) reserved |= XD;
    uint64_t table = r->cr3 & address_mask;
    uint64_t *path[4];
    uint64_t all = ~0ull, any = 0;
    int depth = 0;
    for (int level = 4; level >= 1; level--) {
        int shift = 12 + 9 * (level - 1);
        uint64_t entry_address = table + ((linear >> shift) & 511) * 8;
        if (entry_address + 8 > size) return base_code(kind, mode, r);
        uint64_t *e = (uint64_t *)(memory + entry_address);
        uint64_t entry = *e;
        if (!(entry & P)) return base_code(kind, mode, r);
        int large = (entry & PS) && (level == 2 || level == 3);
        uint64_t rsvd = reserved;
        if (level == 4) rsvd |= PS;                       // PS is reserved in a PML4E
        if (large) rsvd |= ((1ull << shift) - 1) & ~0x1fffull;  // PAT at bit 12, the rest reserved
        if (entry & rsvd) return base_code(kind, mode, r) | 9;
        path[depth++] = e;
        all &= entry;
        any |= entry;
        if (level == 1 || large) {
            uint64_t offset = (1ull << shift) - 1;
            int user = (all & US) != 0, writable = (all & RW) != 0, xd = r->nxe && (any & XD);
            int key = (int)(entry >> 59 & 0xf);
            if (!permitted(r, user, writable, xd, key, kind, mode)) {
                int64_t code = base_code(kind, mode, r) | 1;
                if (user && r->pke && kind != CPAGING_FETCH && !(mode == CPAGING_USER && !user)) code |= 32;
                return code;
            }
            for (int i = 0; i < depth; i++)
                if (!(*path[i] & A)) *path[i] |= A;
            if (kind == CPAGING_WRITE && !(entry & D)) *e |= D;
            *physical = (entry & address_mask & ~offset) | (linear & offset);
            return 0;
        }
        table = entry & address_mask;
    }
    return base_code(kind, mode, r);
}

void cpaging_tlb_init(CPagingTLB *tlb) {
    memset(tlb, 0, sizeof *tlb);
    tlb->generation = 1;
}

void cpaging_tlb_insert(CPagingTLB *tlb, uint64_t linear, uint64_t physical, int user, int writable, int xd, int dirty, int key, int pcid) {
    uint64_t vpn = linear >> 12;
    CPagingTLBEntry *slot = &tlb->slots[vpn & (CPAGING_TLB_ENTRIES - 1)];
    slot->vpn = vpn;
    slot->base = physical & ~0xfffull;
    slot->generation = tlb->generation;
    slot->pcid = (uint16_t)pcid;
    slot->shift = 12;
    slot->key = (uint8_t)key;
    slot->user = (uint8_t)user;
    slot->writable = (uint8_t)writable;
    slot->xd = (uint8_t)xd;
    slot->global = 0;
    slot->dirty = (uint8_t)dirty;
}

int cpaging_tlb_translate(CPagingTLB *tlb, const CPagingRegisters *r, uint64_t linear, int kind, int mode, int pcid, uint64_t *physical) {
    if (!canonical48(linear)) return 0;
    uint64_t vpn = linear >> 12;
    const CPagingTLBEntry *slot = &tlb->slots[vpn & (CPAGING_TLB_ENTRIES - 1)];
    if (slot->vpn != vpn || slot->generation != tlb->generation) return 0;
    if (!slot->global && slot->pcid != pcid) return 0;
    if (kind == CPAGING_WRITE && !slot->dirty) return 0;
    if (!permitted(r, slot->user, slot->writable, slot->xd, slot->key, kind, mode)) return 0;
    *physical = slot->base | (linear & ((1ull << slot->shift) - 1));
    return 1;
}

uint64_t cpaging_build_benchmark_guest(uint8_t *memory, uint64_t size) {
    (void)size;
    // The same layout as the Swift benchmark guest: PT 0x10000, PD 0x11000,
    // PDPT 0x12000 (entry 1: linear 0x40000000), PML4 0x13000; A set, D clear.
    uint64_t *pt = (uint64_t *)(memory + 0x10000);
    for (int page = 0; page < 512; page++) pt[page] = (0x200000ull + ((uint64_t)page << 12)) | 0x27;
    *(uint64_t *)(memory + 0x11000) = 0x10000 | 0x27;
    *(uint64_t *)(memory + 0x12000 + 8) = 0x11000 | 0x27;
    *(uint64_t *)(memory + 0x13000) = 0x12000 | 0x27;
    return 0x13000;
}

uint64_t cpaging_walk_loop(uint8_t *memory, uint64_t size, const CPagingRegisters *r, uint64_t count) {
    uint64_t sum = 0, physical = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t linear = 0x40000000ull + ((i & 511) << 12);
        if (cpaging_walk4(memory, size, r, linear, CPAGING_READ, CPAGING_SUPERVISOR, &physical) == 0) sum += physical;
    }
    return sum;
}

uint64_t cpaging_tlb_hit_loop(CPagingTLB *tlb, const CPagingRegisters *r, uint64_t pages, uint64_t count) {
    uint64_t sum = 0, physical = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t linear = 0x40000000ull + ((i & (pages - 1)) << 12);
        if (cpaging_tlb_translate(tlb, r, linear, CPAGING_READ, CPAGING_SUPERVISOR, 0, &physical)) sum += physical;
    }
    return sum;
}
