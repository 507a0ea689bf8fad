// zlib for the Storage target: inflateInit2 is a macro Swift cannot call, so wrap it.
#ifndef RUND_CZLIB_H
#define RUND_CZLIB_H
#include <zlib.h>

// windowBits 15 + 32: accept gzip or zlib headers, and multi-member gzip is handled by the caller.
static inline int rund_inflate_init(z_stream *stream) { return inflateInit2(stream, 15 + 32); }
#endif
