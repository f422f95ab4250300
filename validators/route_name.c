
/*
 * Route name grammar core; see route_name.h for the grammar.
 *
 * One pass over the bytes with a 256-entry class table, in the manner of
 * ngx_http_parse_unsafe_uri(): no allocation, no locale, no decoding.
 */


#include "route_name.h"


#define W  1    /* ALPHA / DIGIT / "_": may start and continue a segment */
#define D  2    /* "-": may continue a segment only */
#define S  4    /* "/": separates segments */


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
    size_t                segments;
    route_name_rc_e       rc;
    const unsigned char  *p, *end, *segment;

    p = name;
    end = name + len;
    segments = 0;

    if (len == 0) {
        rc = ROUTE_NAME_EMPTY;
        goto failed;
    }

    if (len > limits->max_length) {
        p = name + limits->max_length;
        rc = ROUTE_NAME_TOO_LONG;
        goto failed;
    }

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

        while (p < end && (route_name_class[*p] & (W|D))) {
            p++;
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


const char *
route_name_reason(route_name_rc_e rc)
{
    if ((unsigned) rc >= ROUTE_NAME_NREASONS) {
        return "unknown";
    }

    return route_name_reasons[rc];
}
