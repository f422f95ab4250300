
/*
 * What the route name fuzzers share: the layout of an input.
 *
 * An input is 3 bytes of limits, then the name:
 *
 *   byte 0, and bit 0 of byte 1    max_length: a 9-bit value v, taken
 *                                  modulo 301 (0 to 300); v == 511
 *                                  selects route_name_default_limits
 *   byte 1, bits 1 to 7            max_segments, modulo 11 (0 to 10)
 *   byte 2                         max_segment_length, modulo 81 (0 to 80)
 *
 * Inputs shorter than 3 bytes are names under the default limits.  So
 * "\xff\xff\xff" followed by a name is that name with the defaults, which
 * is how the seed corpus is written.
 */


#ifndef _ROUTE_NAME_FUZZ_H_INCLUDED_
#define _ROUTE_NAME_FUZZ_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "route_name.h"


#define ROUTE_NAME_FUZZ_HEADER  3


/*
 * Sets *name and *len past the header and returns the limits: either
 * route_name_default_limits or *buf, filled in.
 */

static inline const route_name_limits_t *
route_name_fuzz_limits(const uint8_t *data, size_t size,
    route_name_limits_t *buf, const uint8_t **name, size_t *len)
{
    unsigned int  v;

    if (size < ROUTE_NAME_FUZZ_HEADER) {
        *name = data;
        *len = size;
        return &route_name_default_limits;
    }

    *name = data + ROUTE_NAME_FUZZ_HEADER;
    *len = size - ROUTE_NAME_FUZZ_HEADER;

    v = data[0] | (data[1] & 1u) << 8;

    if (v == 511) {
        return &route_name_default_limits;
    }

    buf->max_length = v % 301;
    buf->max_segments = (data[1] >> 1) % 11;
    buf->max_segment_length = data[2] % 81;

    return buf;
}


#endif /* _ROUTE_NAME_FUZZ_H_INCLUDED_ */
