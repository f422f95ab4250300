
/*
 * Route name grammar core; see route_name.h for the grammar.
 *
 * One walk over the segments with a 256-entry class table, in the manner
 * of ngx_http_parse_unsafe_uri(): no allocation, no locale, no decoding.
 *
 * With SSE2 (every x86-64), a name shorter than ROUTE_NAME_MASK_BITS is
 * first classified 16 bytes at a time into bit masks, one bit a byte, and
 * the verdict on a valid name comes from a few operations on the masks,
 * with no branch that depends on where its segments end: on varied names
 * those branches, mispredicted, cost more than the bytes themselves.
 * Any other name is walked, and a classified one is walked over its masks
 * rather than byte by byte; the walk is the same either way, so the two
 * paths cannot disagree on the first violation and its offset.
 */


#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "route_name.h"


#define W  1    /* ALPHA / DIGIT / "_": may start and continue a segment */
#define D  2    /* "-": may continue a segment only */
#define S  4    /* "/": separates segments */


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


typedef struct {
    __m128i   slashes;      /* S bytes, counted in 16 lanes */
    __m128i   allowed;      /* W, D or S bytes, likewise */
    __m128i   bad_starts;   /* segment starts that are not W bytes */
    __m128i   slash;        /* the S bytes of the last chunk */
    uint64_t  wd;           /* W or D bits of the last 4 chunks */
} route_name_chunks_t;

#else

#define ROUTE_NAME_SSE2  0

#endif


#if (ROUTE_NAME_SSE2)
static int route_name_classify(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, uint64_t *stop);
static inline void route_name_chunk(route_name_chunks_t *c, __m128i x,
    __m128i keep, unsigned int shift);
static size_t route_name_sum(__m128i counters);
static size_t route_name_next(const uint64_t *mask, size_t pos);
#endif
static route_name_rc_e route_name_walk(const unsigned char *name,
    size_t len, const route_name_limits_t *limits, size_t *offset,
    const uint64_t *stop);


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


#if (ROUTE_NAME_SSE2)

/* 16 zero bytes, then 16 ones: a window of it keeps the last bytes */

static const unsigned char  route_name_keep[32] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
};

#endif


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
        if (route_name_classify(name, len, limits, stop)) {
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

/*
 * Classifies a name of 1 to ROUTE_NAME_MASK_BITS - 1 bytes and returns 1
 * if it is valid, else 0; either way "stop" receives, one bit a byte, the
 * bytes that are not W or D, and every bit from len on, up to the word
 * holding bit len.  A name is valid when:
 *
 *   - all its bytes are W, D or S;
 *   - every segment start (0, and each byte after a "/") is a W byte,
 *     which rejects empty segments and leading dashes, and it does not
 *     end with "/";
 *   - it has fewer than max_segments slashes;
 *   - no run of bytes between stop bits is longer than max_segment_length
 *     (a bad byte ends a run here as it ends a segment in the walk).  With
 *     a limit of at least ROUTE_NAME_MASK_SEGMENT_LENGTH, only runs that
 *     reach into a word from the words before can be too long: the run
 *     before the first stop bit of each word is measured, from the last
 *     stop bit before the word.
 */

static int
route_name_classify(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, uint64_t *stop)
{
    size_t                i, n, tail, start, end;
    __m128i               keep;
    uint64_t              bad, lo, hi;
    unsigned int          shift;
    unsigned char         small[16];
    route_name_chunks_t   c;
    const unsigned char  *last;

    n = (len + 15) / 16;
    tail = len % 16;

    /*
     * The last chunk, when not a whole one, is loaded so as not to read
     * past the name: the 16 bytes ending at len, with the first 16 - tail
     * (seen already) cleared and their bits shifted out; or, when the name
     * is shorter than 16 bytes, the bytes themselves, with 8-, 4- or
     * 1-byte loads that may overlap, into a zeroed buffer.  Cleared bytes
     * are neither W, D nor S.
     */

    last = name + (n - 1) * 16;
    keep = _mm_set1_epi8(-1);
    shift = 0;

    if (tail != 0) {

        if (len > 16) {
            last = name + len - 16;
            keep = _mm_loadu_si128((const __m128i *)
                                   (route_name_keep + tail));
            shift = 16 - tail;

        } else {
            hi = 0;

            if (len >= 8) {
                memcpy(&lo, name, 8);
                memcpy(&hi, name + len - 8, 8);
                hi = hi >> (15 - len) * 8 >> 8;

            } else if (len >= 4) {
                lo = 0;
                memcpy(&lo, name, 4);
                memcpy(&hi, name + len - 4, 4);
                lo |= hi << (len - 4) * 8;
                hi = 0;

            } else {
                lo = name[0]
                     | (uint64_t) name[len / 2] << len / 2 * 8
                     | (uint64_t) name[len - 1] << (len - 1) * 8;
            }

            memcpy(small, &lo, 8);
            memcpy(small + 8, &hi, 8);
            last = small;
        }
    }

    c.slashes = _mm_setzero_si128();
    c.allowed = _mm_setzero_si128();
    c.bad_starts = _mm_setzero_si128();

    /* as if a "/" came before the name: byte 0 starts a segment */
    c.slash = _mm_slli_si128(_mm_set1_epi8(-1), 15);

    /*
     * The stop bits of 4 chunks are shifted in, 16 at a time, and stored
     * after each chunk: the last store to a word is the whole word.
     */

    c.wd = 0;

    for (i = 0; i < n - 1; i++) {
        route_name_chunk(&c, _mm_loadu_si128((const __m128i *)
                                             (name + i * 16)),
                         _mm_set1_epi8(-1), 0);
        stop[i / 4] = ~c.wd;
    }

    route_name_chunk(&c, _mm_loadu_si128((const __m128i *) last), keep,
                     shift);

    /* a last word of less than 4 chunks is shifted into place */

    stop[(n - 1) / 4] = ~(c.wd >> (3 - (n - 1) % 4) * 16);

    /* and a name of 64, 128 or 192 bytes has bit len in the next word */

    if (len % 64 == 0) {
        stop[len / 64] = ~(uint64_t) 0;
    }

    /* the start at len, after a final "/", is not checked in the chunks */

    bad = _mm_movemask_epi8(c.bad_starts);
    bad |= (route_name_sum(c.allowed) != len);
    bad |= (route_name_sum(c.slashes) >= limits->max_segments);
    bad |= (name[len - 1] == '/');

    start = 0;

    for (i = 0; i <= len / 64; i++) {

        /* with no stop bit, the run has at least the word's bytes */

        end = i * 64 + __builtin_ctzll(stop[i] | (uint64_t) 1 << 63);
        bad |= (end - start > limits->max_segment_length);

        if (stop[i] != 0) {
            start = i * 64 + 64 - __builtin_clzll(stop[i]);
        }
    }

    return bad == 0;
}


/*
 * Classifies a chunk of 16 bytes, of which those where "keep" is 0 are not
 * the name's: cleared, and their "shift" bits shifted out of the W|D bits.
 * The compares are signed, so ranges are tested as x - lo + 0x80 < n +
 * 0x80; they yield -1, which counts in the 16 lanes of c->slashes and
 * c->allowed (at most 16 chunks).  A segment starts at a byte following
 * a "/", which may be the last byte of the previous chunk, or the byte
 * before the first kept one.
 */

static inline void
route_name_chunk(route_name_chunks_t *c, __m128i x, __m128i keep,
    unsigned int shift)
{
    __m128i  word, wd, slash, starts;

    slash = _mm_cmpeq_epi8(x, _mm_set1_epi8('/'));
    starts = _mm_or_si128(_mm_slli_si128(slash, 1),
                          _mm_srli_si128(c->slash, 15));
    c->slash = slash;

    x = _mm_and_si128(x, keep);
    slash = _mm_and_si128(slash, keep);
    starts = _mm_and_si128(starts, keep);

    word = _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(x, _mm_set1_epi8(0x20)),
                                       _mm_set1_epi8((char) (0x80 - 'a'))),
                          _mm_set1_epi8((char) (0x80 + 26)));

    word = _mm_or_si128(word,
               _mm_cmplt_epi8(_mm_add_epi8(x,
                                           _mm_set1_epi8((char) (0x80 - '0'))),
                              _mm_set1_epi8((char) (0x80 + 10))));

    word = _mm_or_si128(word, _mm_cmpeq_epi8(x, _mm_set1_epi8('_')));
    wd = _mm_or_si128(word, _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));

    c->slashes = _mm_sub_epi8(c->slashes, slash);
    c->allowed = _mm_sub_epi8(c->allowed, _mm_or_si128(wd, slash));
    c->bad_starts = _mm_or_si128(c->bad_starts,
                                 _mm_andnot_si128(word, starts));

    c->wd = (c->wd >> 16)
            | (uint64_t) ((unsigned) _mm_movemask_epi8(wd) >> shift) << 48;
}


/* the sum of 16 byte counters */

static size_t
route_name_sum(__m128i counters)
{
    counters = _mm_sad_epu8(counters, _mm_setzero_si128());

    return (size_t) _mm_cvtsi128_si32(counters)
           + (size_t) _mm_extract_epi16(counters, 4);
}


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
