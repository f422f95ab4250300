
/*
 * libFuzzer target: route_name_check() under fuzzed limits.
 *
 * The input is 3 bytes of limits and the name (route_name_fuzz.h).  The
 * name is copied into a heap buffer of exactly its size, so that
 * AddressSanitizer catches a read past it.  Then, under the limits of the
 * header and under a few fixed sets on either side of the edges of the
 * core's SSE2 path:
 *
 *   - the verdict is one of the enum, and the same with a NULL offset and
 *     on a second call;
 *   - each verdict holds of the bytes at its offset (a bad byte is outside
 *     [A-Za-z0-9_/-], a leading dash is a "-" starting a segment, ...), and
 *     the offset is at most len;
 *   - an accepted name has only allowed bytes, no empty segment or leading
 *     dash, and is within every limit; it is accepted under larger limits;
 *   - verdict and offset are those of fuzz_reference(), the grammar
 *     written again here as one pass over the bytes, independently of
 *     route_name.c and of the unit tests' model.
 *
 * Any disagreement abort()s, which libFuzzer reports as a crash.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_name.h"
#include "route_name_fuzz.h"


#define FUZZ_UNSET  ((size_t) -1)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(const unsigned char *name, size_t len,
    const route_name_limits_t *limits);
static void fuzz_invariants(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, route_name_rc_e rc, size_t off);
static route_name_rc_e fuzz_reference(const unsigned char *name,
    size_t len, const route_name_limits_t *limits, size_t *offset);
static int fuzz_word(unsigned char c);
static int fuzz_segment_byte(unsigned char c);
static void fuzz_fail(const char *what, const unsigned char *name,
    size_t len, const route_name_limits_t *limits, route_name_rc_e rc,
    size_t off);


static const route_name_limits_t  fuzz_fixed_limits[] = {
    { 255, 8, 61 },         /* walked: under the SSE2 path's limit */
    { 255, 8, 62 },         /* classified: its lowest limit */
    { 255, 8, 63 },
    { 255, 16, 255 }        /* one segment may fill the name */
};

#define FUZZ_NFIXED  (sizeof(fuzz_fixed_limits) / sizeof(fuzz_fixed_limits[0]))


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                      i, len;
    const uint8_t              *src;
    unsigned char              *name;
    route_name_limits_t         buf;
    const route_name_limits_t  *limits;

    limits = route_name_fuzz_limits(data, size, &buf, &src, &len);

    /* malloc(0) may return NULL; the core must not read a byte of it */

    name = malloc(len ? len : 1);
    if (name == NULL) {
        return 0;
    }

    if (len) {
        memcpy(name, src, len);
    }

    fuzz_check(name, len, limits);

    for (i = 0; i < FUZZ_NFIXED; i++) {
        fuzz_check(name, len, &fuzz_fixed_limits[i]);
    }

    free(name);

    return 0;
}


static void
fuzz_check(const unsigned char *name, size_t len,
    const route_name_limits_t *limits)
{
    size_t               off, off2, ref_off;
    route_name_rc_e      rc, rc2, ref;
    route_name_limits_t  larger;

    off = FUZZ_UNSET;
    rc = route_name_check(name, len, limits, &off);

    if ((unsigned) rc >= ROUTE_NAME_NREASONS) {
        fuzz_fail("verdict out of the enum", name, len, limits, rc, off);
    }

    rc2 = route_name_check(name, len, limits, NULL);

    if (rc2 != rc) {
        fuzz_fail("another verdict with a NULL offset", name, len, limits,
                  rc, off);
    }

    off2 = FUZZ_UNSET;
    rc2 = route_name_check(name, len, limits, &off2);

    if (rc2 != rc || (rc != ROUTE_NAME_OK && off2 != off)) {
        fuzz_fail("another verdict on a second call", name, len, limits,
                  rc, off);
    }

    fuzz_invariants(name, len, limits, rc, off);

    ref_off = FUZZ_UNSET;
    ref = fuzz_reference(name, len, limits, &ref_off);

    if (ref != rc || (rc != ROUTE_NAME_OK && ref_off != off)) {
        fprintf(stderr, "reference: %s at %zu\n", route_name_reason(ref),
                ref_off);
        fuzz_fail("the reference disagrees", name, len, limits, rc, off);
    }

    /* a name within limits is within larger ones, on either path */

    if (rc == ROUTE_NAME_OK) {
        larger.max_length = limits->max_length + 1;
        larger.max_segments = limits->max_segments + 1;
        larger.max_segment_length = limits->max_segment_length + 62;

        if (route_name_check(name, len, &larger, NULL) != ROUTE_NAME_OK) {
            fuzz_fail("rejected under larger limits", name, len, limits,
                      rc, off);
        }
    }
}


/* what each verdict says of the name, checked on the name itself */

static void
fuzz_invariants(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, route_name_rc_e rc, size_t off)
{
    size_t  i, start, slashes;

    if (rc != ROUTE_NAME_OK && off > len) {
        fuzz_fail("offset past the name", name, len, limits, rc, off);
    }

    if ((len == 0) != (rc == ROUTE_NAME_EMPTY)) {
        fuzz_fail("empty iff zero bytes", name, len, limits, rc, off);
    }

    if (len != 0
        && (len > limits->max_length) != (rc == ROUTE_NAME_TOO_LONG))
    {
        fuzz_fail("too long iff over max_length", name, len, limits, rc,
                  off);
    }

    slashes = 0;

    for (i = 0; i < off && i < len; i++) {
        slashes += (name[i] == '/');
    }

    switch (rc) {

    case ROUTE_NAME_OK:
        start = 0;
        slashes = 0;

        for (i = 0; i <= len; i++) {

            if (i == len || name[i] == '/') {
                if (i == start || i - start > limits->max_segment_length) {
                    fuzz_fail("ok with a bad segment", name, len, limits,
                              rc, off);
                }

                if (i < len) {
                    slashes++;
                }

                start = i + 1;
                continue;
            }

            if (!fuzz_segment_byte(name[i])
                || (i == start && !fuzz_word(name[i])))
            {
                fuzz_fail("ok with a bad byte", name, len, limits, rc, off);
            }
        }

        if (slashes >= limits->max_segments) {
            fuzz_fail("ok with too many segments", name, len, limits, rc,
                      off);
        }

        break;

    case ROUTE_NAME_EMPTY:
        if (off != 0) {
            fuzz_fail("empty not at 0", name, len, limits, rc, off);
        }

        break;

    case ROUTE_NAME_TOO_LONG:
        if (off != limits->max_length) {
            fuzz_fail("too long not at max_length", name, len, limits, rc,
                      off);
        }

        break;

    case ROUTE_NAME_BAD_BYTE:
        if (off == len || fuzz_segment_byte(name[off]) || name[off] == '/') {
            fuzz_fail("bad byte at an allowed byte", name, len, limits, rc,
                      off);
        }

        break;

    case ROUTE_NAME_EMPTY_SEGMENT:
        if (off == len ? name[len - 1] != '/'
            : name[off] != '/' || (off > 0 && name[off - 1] != '/'))
        {
            fuzz_fail("empty segment where none is", name, len, limits, rc,
                      off);
        }

        break;

    case ROUTE_NAME_LEADING_DASH:
        if (off == len || name[off] != '-'
            || (off > 0 && name[off - 1] != '/'))
        {
            fuzz_fail("leading dash where none is", name, len, limits, rc,
                      off);
        }

        break;

    case ROUTE_NAME_SEGMENT_TOO_LONG:
        if (off == len || off < limits->max_segment_length) {
            fuzz_fail("segment too long too early", name, len, limits, rc,
                      off);
        }

        start = off - limits->max_segment_length;

        for (i = start; i <= off; i++) {
            if (!fuzz_segment_byte(name[i])) {
                fuzz_fail("segment too long across a stop", name, len,
                          limits, rc, off);
            }
        }

        if ((start > 0 && name[start - 1] != '/') || !fuzz_word(name[start])) {
            fuzz_fail("segment too long not from a segment start", name, len,
                      limits, rc, off);
        }

        break;

    case ROUTE_NAME_TOO_MANY_SEGMENTS:
        if (off == len || slashes != limits->max_segments
            || (off > 0 && name[off - 1] != '/'))
        {
            fuzz_fail("too many segments where they are not", name, len,
                      limits, rc, off);
        }

        break;
    }
}


/*
 * The grammar as one pass over the bytes, with "run" the bytes of the
 * current segment seen so far (0 at a segment start); the first
 * violation from the left wins, the length before all.
 */

static route_name_rc_e
fuzz_reference(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset)
{
    size_t         i, run, segments;
    unsigned char  c;

    *offset = 0;

    if (len == 0) {
        return ROUTE_NAME_EMPTY;
    }

    if (len > limits->max_length) {
        *offset = limits->max_length;
        return ROUTE_NAME_TOO_LONG;
    }

    run = 0;
    segments = 0;

    for (i = 0; i < len; i++) {
        c = name[i];
        *offset = i;

        if (run == 0) {
            if (++segments > limits->max_segments) {
                return ROUTE_NAME_TOO_MANY_SEGMENTS;
            }

            if (c == '/') {
                return ROUTE_NAME_EMPTY_SEGMENT;
            }

            if (c == '-') {
                return ROUTE_NAME_LEADING_DASH;
            }

            if (!fuzz_word(c)) {
                return ROUTE_NAME_BAD_BYTE;
            }

        } else if (c == '/') {
            run = 0;
            continue;

        } else if (!fuzz_segment_byte(c)) {
            return ROUTE_NAME_BAD_BYTE;
        }

        if (run == limits->max_segment_length) {
            return ROUTE_NAME_SEGMENT_TOO_LONG;
        }

        run++;
    }

    if (run == 0) {
        *offset = len;
        return ROUTE_NAME_EMPTY_SEGMENT;
    }

    return ROUTE_NAME_OK;
}


/* ALPHA / DIGIT / "_", spelled out rather than ranged */

static int
fuzz_word(unsigned char c)
{
    return c != '\0'
           && memchr("abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_", c, 63) != NULL;
}


/* a byte that may continue a segment: a word byte or "-" */

static int
fuzz_segment_byte(unsigned char c)
{
    return fuzz_word(c) || c == '-';
}


static void
fuzz_fail(const char *what, const unsigned char *name, size_t len,
    const route_name_limits_t *limits, route_name_rc_e rc, size_t off)
{
    size_t  i;

    fprintf(stderr, "route_name_fuzz: %s\n  limits %zu/%zu/%zu, %zu bytes, "
            "core %s (%d) at %zu\n  \"", what, limits->max_length,
            limits->max_segments, limits->max_segment_length, len,
            route_name_reason(rc), (int) rc, off);

    for (i = 0; i < len; i++) {
        fprintf(stderr, "\\x%02x", name[i]);
    }

    fprintf(stderr, "\"\n");
    abort();
}
