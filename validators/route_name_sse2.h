
/*
 * Internal to the route name core: the SSE2 classifier, which
 * route_name_check() tries first on the names it can take.  Included by
 * route_name.c and route_name_sse2.c only; the interface is route_name.h.
 */


#ifndef _ROUTE_NAME_SSE2_H_INCLUDED_
#define _ROUTE_NAME_SSE2_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "route_name.h"


#if defined(__SSE2__)

#define ROUTE_NAME_SSE2  1

/*
 * Bits in a mask: names of up to 255 bytes, one bit a byte, and the bit
 * at position len, which ends the last segment.
 */
#define ROUTE_NAME_MASK_BITS   256
#define ROUTE_NAME_MASK_WORDS  (ROUTE_NAME_MASK_BITS / 64)

/*
 * Two bits in one 64-bit word are at most 62 positions apart: segments
 * allowed that long can only be too long across words.
 */
#define ROUTE_NAME_MASK_SEGMENT_LENGTH  62


/*
 * For a name of 1 to ROUTE_NAME_MASK_BITS - 1 bytes, checked with a
 * max_segment_length of at least ROUTE_NAME_MASK_SEGMENT_LENGTH: returns
 * 1 if the name is valid, else 0, and fills "stop" (ROUTE_NAME_MASK_WORDS
 * words) with the bytes where a segment's W and D bytes end, for the
 * walk of route_name.c to find the first violation.
 */
int route_name_sse2_classify(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, uint64_t *stop);

#else

#define ROUTE_NAME_SSE2  0

#endif


#endif /* _ROUTE_NAME_SSE2_H_INCLUDED_ */
