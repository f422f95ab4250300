
/*
 * Route name grammar core; see route_name.h for the grammar.
 *
 * One walk over the segments with a 256-entry class table, in the manner
 * of ngx_http_parse_unsafe_uri(): no allocation, no locale, no decoding.
 * The walk is the reference: it alone says what the first violation is
 * and where.
 *
 * With SSE2 (every x86-64), a name shorter than ROUTE_NAME_MASK_BITS is
 * first classified 16 bytes at a time by route_name_sse2.c, which accepts
 * a valid name with no branch on where its segments end.  Any other name
 * is walked; a classified one over the classifier's "stop" mask rather
 * than byte by byte, which changes how the end of a segment is found and
 * nothing else.
 */


#include <stdint.h>

#include "route_name.h"
#include "route_name_sse2.h"


#define W  1    /* ALPHA / DIGIT / "_": may start and continue a segment */
#define D  2    /* "-": may continue a segment only */
#define S  4    /* "/": separates segments */


static route_name_rc_e route_name_walk(const unsigned char *name,
    size_t len, const route_name_limits_t *limits, size_t *offset,
    const uint64_t *stop);
#if (ROUTE_NAME_SSE2)
static size_t route_name_next(const uint64_t *mask, size_t pos);
#endif


static const unsigned char  route_name_class[256] = {
    /* 0x00 - 0x2f: controls, space, punctuation; "-" 0x2d, "/" 0x2f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, D, 0, S,
    /* 0x30 - 0x3f: digits, then ":;<=>?" */
    W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, 0, 0,
    /* 0x40 - 0x5f: "@", upper case, "[\]^", "_" 0x5f */
    0, W, W, W, W, W, W, W, W, W, W, W, W, W, W, W,
    W, W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, W,
    /* 0x60 - 0x7f: "`", lower case, "{|}~", DEL */
    0, W, W, W, W, W, W, W, W, W, W, W, W, W, W, W,
    W, W, W, W, W, W, W, W, W, W, W, 0, 0, 0, 0, 0,
    /* 0x80 - 0xff: never allowed */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


const route_name_limits_t  route_name_default_limits = {
    ROUTE_NAME_MAX_LENGTH,
    ROUTE_NAME_MAX_SEGMENTS,
    ROUTE_NAME_MAX_SEGMENT_LENGTH
};


static const char  *route_name_reasons[ROUTE_NAME_NREASONS] = {
    "ok",
    "empty",
    "too long",
    "bad byte",
    "empty segment",
    "leading dash",
    "segment too long",
    "too many segments"
};


route_name_rc_e
route_name_check(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset)
{
#if (ROUTE_NAME_SSE2)
    uint64_t  stop[ROUTE_NAME_MASK_WORDS];
#endif

    if (len == 0) {
        if (offset != NULL) {
            *offset = 0;
        }

        return ROUTE_NAME_EMPTY;
    }

    if (len > limits->max_length) {
        if (offset != NULL) {
            *offset = limits->max_length;
        }

        return ROUTE_NAME_TOO_LONG;
    }

#if (ROUTE_NAME_SSE2)

    if (len < ROUTE_NAME_MASK_BITS
        && limits->max_segment_length >= ROUTE_NAME_MASK_SEGMENT_LENGTH)
    {
        if (route_name_sse2_classify(name, len, limits, stop)) {
            return ROUTE_NAME_OK;
        }

        return route_name_walk(name, len, limits, offset, stop);
    }

#endif

    return route_name_walk(name, len, limits, offset, NULL);
}


const char *
route_name_reason(route_name_rc_e rc)
{
    if ((unsigned) rc >= ROUTE_NAME_NREASONS) {
        return "unknown";
    }

    return route_name_reasons[rc];
}


/*
 * Finds the first violation, segment by segment; len is neither 0 nor
 * more than max_length.  The end of a segment's bytes is the first byte
 * past its first one that is not W or D: found in the "stop" mask when
 * the name was classified, else by looking at the bytes.
 */

static route_name_rc_e
route_name_walk(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset, const uint64_t *stop)
{
    size_t                segments;
    route_name_rc_e       rc;
    const unsigned char  *p, *end, *segment;

    p = name;
    end = name + len;
    segments = 0;

#if !(ROUTE_NAME_SSE2)
    (void) stop;
#endif

    for ( ;; ) {

        /* p is at the first byte of a segment and p < end */

        if (++segments > limits->max_segments) {
            rc = ROUTE_NAME_TOO_MANY_SEGMENTS;
            goto failed;
        }

        if (route_name_class[*p] != W) {
            rc = (*p == '/') ? ROUTE_NAME_EMPTY_SEGMENT
                             : (*p == '-') ? ROUTE_NAME_LEADING_DASH
                                           : ROUTE_NAME_BAD_BYTE;
            goto failed;
        }

        segment = p++;

#if (ROUTE_NAME_SSE2)
        if (stop != NULL) {
            p = name + route_name_next(stop, (size_t) (p - name));

        } else
#endif
        {
            while (p < end && (route_name_class[*p] & (W|D))) {
                p++;
            }
        }

        if ((size_t) (p - segment) > limits->max_segment_length) {
            p = segment + limits->max_segment_length;
            rc = ROUTE_NAME_SEGMENT_TOO_LONG;
            goto failed;
        }

        if (p == end) {
            return ROUTE_NAME_OK;
        }

        if (*p != '/') {
            rc = ROUTE_NAME_BAD_BYTE;
            goto failed;
        }

        if (++p == end) {
            rc = ROUTE_NAME_EMPTY_SEGMENT;
            goto failed;
        }
    }

failed:

    if (offset != NULL) {
        *offset = (size_t) (p - name);
    }

    return rc;
}


#if (ROUTE_NAME_SSE2)

/* the position of the first bit set in "mask" from "pos" on; there is one */

static size_t
route_name_next(const uint64_t *mask, size_t pos)
{
    size_t    i;
    uint64_t  m;

    i = pos / 64;
    m = mask[i] & (~(uint64_t) 0 << (pos % 64));

    while (m == 0) {
        m = mask[++i];
    }

    return i * 64 + __builtin_ctzll(m);
}

#endif
