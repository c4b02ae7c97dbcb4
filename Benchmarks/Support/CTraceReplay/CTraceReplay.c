// The plain-C baseline of `shadowmmu workload --trace` (issue 14): what a C
// programmer would write to replay a Lackey trace through x86 4-level paging.
//
// - A streaming parser: the file is read in 1 MiB chunks, each line parsed in
//   place (the same rules: `==` lines and non-records skipped; I/L/S/M, hex
//   address, comma, decimal size).
// - A guest with demand-mapped 4-level tables over flat memory: a page is
//   mapped on first touch (code if first fetched, else data), tables are
//   allocated as needed.
// - A 1024-entry direct-mapped TLB; every miss is a full walk from CR3 with
//   the checks the architecture makes (present, reserved bits, user,
//   writable, execute-disable) and the accessed/dirty flag updates.
// - Accesses split at page boundaries and into pieces of at most 8 bytes; a
//   write through a TLB entry made by a read walks again to set D.
#include "CTraceReplay.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P 1ull
#define RW 2ull
#define US 4ull
#define A 0x20ull
#define D 0x40ull
#define PS 0x80ull
#define XD (1ull << 63)
#define ADDR_MASK 0x000ffffffffff000ull
#define RSVD_MASK 0x000f000000000000ull  /* bits 51:48: MAXPHYADDR 48 */

enum { KIND_FETCH, KIND_READ, KIND_WRITE };

typedef struct {
    uint8_t *memory;        // guest-physical memory
    uint64_t size, next;    // bytes, next free frame
    uint64_t cr3;
    struct { uint64_t vpn, pfn; uint8_t writable, dirty, executable, valid; } tlb[1024];
    CTraceReplayResult *result;
} Machine;

static uint64_t allocate_frame(Machine *m) {
    if (m->next + 4096 > m->size) {
        uint64_t size = m->size * 2;
        m->memory = realloc(m->memory, size);
        memset(m->memory + m->size, 0, size - m->size);
        m->size = size;
    }
    uint64_t frame = m->next;
    m->next += 4096;
    return frame;
}

static inline uint64_t *entry(Machine *m, uint64_t address) { return (uint64_t *)(m->memory + address); }

/// The guest kernel's fault handler: maps the page (code or data) with its tables.
static void map_page(Machine *m, uint64_t linear, int kind) {
    uint64_t table = m->cr3;
    for (int level = 4; level > 1; level--) {
        uint64_t *e = entry(m, table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8);
        if (!(*e & P)) {
            uint64_t frame = allocate_frame(m);
            e = entry(m, table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8);  // memory may have moved
            *e = frame | P | RW | US;
            m->result->tables++;
        }
        table = *e & ADDR_MASK;
    }
    uint64_t frame = allocate_frame(m);
    uint64_t *pte = entry(m, table + ((linear >> 12) & 511) * 8);
    *pte = frame | P | US | (kind == KIND_FETCH ? 0 : RW | XD);
    m->result->faults++;
}

/// A full walk with the architecture's checks and A/D updates; 0 on a fault.
static int walk(Machine *m, uint64_t linear, int kind, uint64_t *pfn, int *writable, int *executable) {
    uint64_t table = m->cr3, rights_rw = RW, rights_x = 1;
    uint64_t *path[4];
    for (int level = 4; level >= 1; level--) {
        uint64_t *e = entry(m, table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8);
        uint64_t value = *e;
        if (!(value & P)) return 0;
        if ((level == 4 && (value & PS)) || (value & RSVD_MASK)) return 0;
        if (!(value & US)) return 0;
        rights_rw &= value;
        if (value & XD) rights_x = 0;
        path[4 - level] = e;
        table = value & ADDR_MASK;
    }
    if (kind == KIND_WRITE && !rights_rw) return 0;
    if (kind == KIND_FETCH && !rights_x) return 0;
    for (int i = 0; i < 4; i++) *path[i] |= A;
    if (kind == KIND_WRITE) *path[3] |= D;
    *pfn = table >> 12;
    *writable = rights_rw != 0;
    *executable = rights_x != 0;
    return 1;
}

/// Upgrades the page's rights after a permission fault (code written, data fetched).
static void upgrade(Machine *m, uint64_t linear) {
    uint64_t table = m->cr3;
    for (int level = 4; level > 1; level--) table = *entry(m, table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8) & ADDR_MASK;
    uint64_t *pte = entry(m, table + ((linear >> 12) & 511) * 8);
    *pte = (*pte | RW) & ~XD;
}

static void guest_access(Machine *m, uint64_t linear, int kind, int width) {
    uint64_t vpn = linear >> 12;
    unsigned slot = vpn & 1023;
    for (;;) {
        if (m->tlb[slot].valid && m->tlb[slot].vpn == vpn &&
            (kind != KIND_WRITE || (m->tlb[slot].writable && m->tlb[slot].dirty)) &&
            (kind != KIND_FETCH || m->tlb[slot].executable)) {
            uint8_t *byte = m->memory + (m->tlb[slot].pfn << 12) + (linear & 0xfff);
            if (kind == KIND_WRITE) { uint64_t v; memcpy(&v, byte, width); memcpy(byte, &v, width); }
            else { volatile uint64_t v = 0; memcpy((void *)&v, byte, width); (void)v; }
            m->result->accesses++;
            return;
        }
        m->result->tlbMisses++;
        uint64_t pfn; int writable, executable;
        if (walk(m, linear, kind, &pfn, &writable, &executable)) {
            m->tlb[slot].vpn = vpn; m->tlb[slot].pfn = pfn; m->tlb[slot].valid = 1;
            m->tlb[slot].writable = writable; m->tlb[slot].executable = executable;
            m->tlb[slot].dirty = kind == KIND_WRITE;
            continue;
        }
        m->tlb[slot].valid = 0;
        // The kernel's fault handler: first touch, or a permission upgrade.
        uint64_t table = m->cr3; int mapped = 1;
        for (int level = 4; level >= 1 && mapped; level--) {
            uint64_t value = *entry(m, table + ((linear >> (12 + 9 * (level - 1))) & 511) * 8);
            if (!(value & P)) mapped = 0;
            table = value & ADDR_MASK;
        }
        if (mapped) upgrade(m, linear); else map_page(m, linear, kind);
    }
}

static void replay(Machine *m, int letter, uint64_t address, uint64_t size) {
    uint64_t end = address + size;
    while (address < end) {
        uint64_t piece_end = (address | 0xfff) + 1;
        if (piece_end > end) piece_end = end;
        if (letter == 'I') { guest_access(m, address, KIND_FETCH, 1); address = piece_end; continue; }
        while (address < piece_end) {
            uint64_t remaining = piece_end - address;
            int width = remaining >= 8 ? 8 : remaining >= 4 ? 4 : remaining >= 2 ? 2 : 1;
            if (letter != 'S') guest_access(m, address, KIND_READ, width);
            if (letter != 'L') guest_access(m, address, KIND_WRITE, width);
            address += width;
        }
    }
}

/// Parses one line; returns 1 for a record, 0 for another line, -1 for a malformed record.
static int parse(const char *line, const char *end, int *letter, uint64_t *address, uint64_t *size) {
    if (end - line >= 2 && line[0] == '=' && line[1] == '=') return 0;
    while (line < end && (*line == ' ' || *line == '\t')) line++;
    if (line == end || !(*line == 'I' || *line == 'L' || *line == 'S' || *line == 'M')) return 0;
    *letter = *line++;
    if (line < end && *line != ' ' && *line != '\t') return 0;
    while (line < end && (*line == ' ' || *line == '\t')) line++;
    uint64_t value = 0; int digits = 0;
    for (; line < end; line++, digits++) {
        char c = *line; int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else break;
        value = value << 4 | (uint64_t)d;
    }
    if (!digits || digits > 16 || line == end || *line++ != ',') return -1;
    uint64_t s = 0; int sdigits = 0;
    for (; line < end && *line >= '0' && *line <= '9'; line++, sdigits++) s = s * 10 + (uint64_t)(*line - '0');
    while (line < end && (*line == ' ' || *line == '\t' || *line == '\r')) line++;
    if (!sdigits || s < 1 || s > 4096 || line != end) return -1;
    *address = value; *size = s;
    return 1;
}

int ctrace_replay(const char *path, CTraceReplayResult *result) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    memset(result, 0, sizeof *result);
    Machine *m = calloc(1, sizeof *m);
    m->size = 64ull << 20;
    m->memory = calloc(1, m->size);
    m->next = 4096;
    m->result = result;
    m->cr3 = allocate_frame(m);
    enum { CHUNK = 1 << 20 };
    char *buffer = malloc(CHUNK);
    size_t start = 0, end = 0; uint64_t line_number = 0; int eof = 0;
    for (;;) {
        char *newline = start < end ? memchr(buffer + start, '\n', end - start) : NULL;
        if (!newline) {
            if (eof) { if (start == end) break; newline = buffer + end; }
            else {
                memmove(buffer, buffer + start, end - start);
                end -= start; start = 0;
                ssize_t n = read(fd, buffer + end, CHUNK - end);
                if (n <= 0) eof = 1; else end += (size_t)n;
                continue;
            }
        }
        line_number++;
        int letter; uint64_t address, size;
        int kind = parse(buffer + start, newline, &letter, &address, &size);
        if (kind < 0 && !result->error) result->error = (int)line_number;
        if (kind > 0) { result->records++; replay(m, letter, address, size); }
        start = (size_t)(newline - buffer) + (newline < buffer + end ? 1 : 0);
        if (newline == buffer + end) start = end;
    }
    close(fd);
    free(buffer);
    free(m->memory);
    free(m);
    return 0;
}

int ctrace_write_stride_trace(const char *path, uint64_t bytes, int passes) {
    FILE *file = fopen(path, "w");
    if (!file) return -1;
    fprintf(file, "==1== Lackey, an example Valgrind tool\n==1== Command: ./stride\n");
    const uint64_t code = 0x401000, data = 0x4a000000, stack = 0x1ffefff000;
    for (int pass = 0; pass < passes; pass++) {
        for (uint64_t offset = 0; offset < bytes; offset += 64) {
            fprintf(file, "I  %08llx,4\n", (unsigned long long)code);
            fprintf(file, " M %08llx,1\n", (unsigned long long)(data + offset));
            fprintf(file, "I  %08llx,3\n", (unsigned long long)(code + 4));
            fprintf(file, " L %08llx,1\n", (unsigned long long)(data + offset));
            fprintf(file, "I  %08llx,4\n", (unsigned long long)(code + 7));
            fprintf(file, " L %llx,8\n", (unsigned long long)(stack + 0x9d8));
            fprintf(file, "I  %08llx,2\n", (unsigned long long)(code + 11));
        }
    }
    fprintf(file, "==1== Exit code: 0\n");
    return fclose(file);
}
