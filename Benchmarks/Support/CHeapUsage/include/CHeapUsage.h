#ifndef CHEAPUSAGE_H
#define CHEAPUSAGE_H

#include <stddef.h>

/// Bytes allocated with malloc and not yet freed (glibc's mallinfo2: arena
/// blocks in use plus mmap-served blocks). Swift's Glibc module does not
/// export <malloc.h>.
size_t heap_bytes_in_use(void);

#endif
