#ifndef CTRACEREPLAY_H
#define CTRACEREPLAY_H
#include <stdint.h>

/// The plain-C baseline of `shadowmmu workload --trace`: the same job over
/// the same file, written as a C programmer would, for the benchmarks'
/// ratios (issue 14). See CTraceReplay.c.
typedef struct {
    uint64_t records;     ///< I/L/S/M records read
    uint64_t accesses;    ///< accesses replayed (after splitting)
    uint64_t faults;      ///< first touches: pages mapped on demand
    uint64_t tlbMisses;   ///< full walks
    uint64_t tables;      ///< page-table pages allocated
    int error;            ///< 0, or the line of the first malformed record
} CTraceReplayResult;

/// Replays the Lackey trace at `path`; returns -1 if it cannot be read.
int ctrace_replay(const char *path, CTraceReplayResult *result);

/// Writes a TLB-friendly Lackey trace of `records` records to `path`: a
/// loop striding 64 bytes over `bytes` of data, `passes` times, with its
/// instruction fetches, as Lackey records a C loop. Returns 0 on success.
int ctrace_write_stride_trace(const char *path, uint64_t bytes, int passes);

#endif
