
/*
 * The route name core's fast path, with SSE2 (every x86-64); route_name.c
 * holds the grammar, its reference walk and route_name_check().
 *
 * A name shorter than ROUTE_NAME_MASK_BITS is classified 16 bytes at a
 * time into bit masks, one bit a byte, and the verdict on a valid name
 * comes from a few operations on the masks, with no branch that depends
 * on where its segments end: on varied names those branches, mispredicted,
 * cost more than the bytes themselves.  An invalid name is then walked by
 * route_name.c over the "stop" mask rather than byte by byte; the walk is
 * the same either way, so the two paths cannot disagree on the first
 * violation and its offset (the fuzzers check it: validators/fuzz/).
 * W, D and S below are the byte classes of route_name.c.
 */


#include <stdint.h>
#include <string.h>

#include "route_name_sse2.h"


#if (ROUTE_NAME_SSE2)

#include <emmintrin.h>


typedef struct {
    __m128i   slashes;      /* S bytes, counted in 16 lanes */
    __m128i   allowed;      /* W, D or S bytes, likewise */
    __m128i   bad_starts;   /* segment starts that are not W bytes */
    __m128i   slash;        /* the S bytes of the last chunk */
    uint64_t  wd;           /* W or D bits of the last 4 chunks */
} route_name_chunks_t;


static inline void route_name_chunk(route_name_chunks_t *c, __m128i x,
    __m128i keep, unsigned int shift);
static size_t route_name_sum(__m128i counters);


/* 16 zero bytes, then 16 ones: a window of it keeps the last bytes */

static const unsigned char  route_name_keep[32] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
};


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

int
route_name_sse2_classify(const unsigned char *name, size_t len,
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


static size_t
route_name_sum(__m128i counters)
{
    counters = _mm_sad_epu8(counters, _mm_setzero_si128());

    return (size_t) _mm_cvtsi128_si32(counters)
           + (size_t) _mm_extract_epi16(counters, 4);
}

#endif
