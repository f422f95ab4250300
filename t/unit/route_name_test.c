
/*
 * Unit tests of the route name grammar core (validators/route_name.c).
 *
 * A plain program printing TAP: "ok N - description" or "not ok N - ...",
 * with the plan "1..N" at the end; it exits 1 when a test failed.
 *
 * Names are given with their length everywhere, so that a NUL in the
 * middle of a name is a byte like any other.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_name.h"


/* a name from a string literal, which may hold NULs: "a\0b" is 3 bytes */
#define N(s)  (const unsigned char *) (s), sizeof(s) - 1

#define OK    ROUTE_NAME_OK


typedef struct {
    const unsigned char  *name;
    size_t                len;
    route_name_rc_e       rc;
    size_t                offset;
} test_case_t;


static void test_reasons(void);
static void test_valid(void);
static void test_dots(void);
static void test_encodings(void);
static void test_slashes(void);
static void test_dashes(void);
static void test_bytes(void);
static void test_segment_length(void);
static void test_segments(void);
static void test_length(void);
static void test_chunk_boundaries(void);
static void test_custom_limits(void);
static void test_all_single_bytes(void);
static void test_all_bytes_in_context(void);
static void test_against_model(void);

static void test_table(const test_case_t *cases, size_t n,
    const route_name_limits_t *limits);
static void is_name(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, route_name_rc_e rc, size_t offset);
static void ok(int cond, const char *fmt, ...);
static void diag(const char *fmt, ...);
static const char *printable(const unsigned char *name, size_t len);
static unsigned char *make_name(size_t segments, size_t segment_length);
static route_name_rc_e model(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset);
static int word(int c);
static unsigned long rand_next(void);


static const route_name_limits_t  *dflt = &route_name_default_limits;
static unsigned int                tests;
static unsigned int                failures;
static unsigned long               rand_state = 0x2545f4914f6cdd1dUL;


int
main(void)
{
    test_reasons();
    test_valid();
    test_dots();
    test_encodings();
    test_slashes();
    test_dashes();
    test_bytes();
    test_segment_length();
    test_segments();
    test_length();
    test_chunk_boundaries();
    test_custom_limits();
    test_all_single_bytes();
    test_all_bytes_in_context();
    test_against_model();

    printf("1..%u\n", tests);

    if (failures) {
        diag("failed %u test(s) of %u", failures, tests);
        return 1;
    }

    return 0;
}


static void
test_reasons(void)
{
    size_t             i;
    route_name_rc_e    rc;

    static const char  *reasons[] = {
        "ok", "empty", "too long", "bad byte", "empty segment",
        "leading dash", "segment too long", "too many segments"
    };

    ok(ROUTE_NAME_NREASONS == sizeof(reasons) / sizeof(reasons[0]),
       "ROUTE_NAME_NREASONS is %d", (int) ROUTE_NAME_NREASONS);

    for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        rc = (route_name_rc_e) i;
        ok(strcmp(route_name_reason(rc), reasons[i]) == 0,
           "reason %d is \"%s\"", (int) i, reasons[i]);
    }

    ok(strcmp(route_name_reason(ROUTE_NAME_NREASONS), "unknown") == 0,
       "reason past the last is \"unknown\"");
    ok(strcmp(route_name_reason((route_name_rc_e) -1), "unknown") == 0,
       "reason -1 is \"unknown\"");

    ok(dflt->max_length == 255 && ROUTE_NAME_MAX_LENGTH == 255,
       "default max_length is 255");
    ok(dflt->max_segments == 8 && ROUTE_NAME_MAX_SEGMENTS == 8,
       "default max_segments is 8");
    ok(dflt->max_segment_length == 64
       && ROUTE_NAME_MAX_SEGMENT_LENGTH == 64,
       "default max_segment_length is 64");

    ok(route_name_check(N("a.b"), dflt, NULL) == ROUTE_NAME_BAD_BYTE,
       "a NULL offset is allowed on failure");
    ok(route_name_check(N("ab"), dflt, NULL) == OK,
       "a NULL offset is allowed on success");
}


static void
test_valid(void)
{
    static const test_case_t  cases[] = {
        { N("hello"), OK, 0 },
        { N("v1/time"), OK, 0 },
        { N("a"), OK, 0 },
        { N("Z"), OK, 0 },
        { N("_"), OK, 0 },
        { N("0"), OK, 0 },
        { N("9lives"), OK, 0 },
        { N("_private"), OK, 0 },
        { N("__init__"), OK, 0 },
        { N("a_b_c"), OK, 0 },
        { N("ABCxyz019_-"), OK, 0 },
        { N("a/b"), OK, 0 },
        { N("a/b/c/d"), OK, 0 },
        { N("api/v2/users/by-id"), OK, 0 },
        { N("_/_/_"), OK, 0 },
        { N("0/1/2/3/4/5/6/7"), OK, 0 },
        { N("Mixed_Case/With-Dash_9"), OK, 0 },
        { N("x-/y--/z_-_"), OK, 0 }
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_dots(void)
{
    static const test_case_t  cases[] = {
        { N("."), ROUTE_NAME_BAD_BYTE, 0 },
        { N(".."), ROUTE_NAME_BAD_BYTE, 0 },
        { N("..."), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a.b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a."), ROUTE_NAME_BAD_BYTE, 1 },
        { N(".hidden"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a/.hidden"), ROUTE_NAME_BAD_BYTE, 2 },
        { N("a/../b"), ROUTE_NAME_BAD_BYTE, 2 },
        { N("a/./b"), ROUTE_NAME_BAD_BYTE, 2 },
        { N("a/."), ROUTE_NAME_BAD_BYTE, 2 },
        { N("a/.."), ROUTE_NAME_BAD_BYTE, 2 },
        { N("../a"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("../../etc/passwd"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("v1/time.lua"), ROUTE_NAME_BAD_BYTE, 7 },
        { N("a..b"), ROUTE_NAME_BAD_BYTE, 1 }
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_encodings(void)
{
    static const test_case_t  cases[] = {
        { N("%2e%2e"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("%2e%2e/x"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a%2fb"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a%2Fb"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a/%2e"), ROUTE_NAME_BAD_BYTE, 2 },
        { N("a%00"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a%"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\\b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("\\"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a\\..\\b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("..\\x"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a+b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a?b=1"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a#b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a;b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a:b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a~"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("~a"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a*"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("$a"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("caf\xc3\xa9"), ROUTE_NAME_BAD_BYTE, 3 },       /* UTF-8 e acute */
        { N("\xef\xbc\x8f"), ROUTE_NAME_BAD_BYTE, 0 },      /* fullwidth / */
        { N("a\xc0\xaf" "b"), ROUTE_NAME_BAD_BYTE, 1 },    /* overlong / */
        { N("\xc0\xae\xc0\xae"), ROUTE_NAME_BAD_BYTE, 0 }   /* overlong .. */
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_slashes(void)
{
    static const test_case_t  cases[] = {
        { N(""), ROUTE_NAME_EMPTY, 0 },
        { N("/"), ROUTE_NAME_EMPTY_SEGMENT, 0 },
        { N("//"), ROUTE_NAME_EMPTY_SEGMENT, 0 },
        { N("/a"), ROUTE_NAME_EMPTY_SEGMENT, 0 },
        { N("/etc/passwd"), ROUTE_NAME_EMPTY_SEGMENT, 0 },
        { N("a/"), ROUTE_NAME_EMPTY_SEGMENT, 2 },
        { N("a/b/"), ROUTE_NAME_EMPTY_SEGMENT, 4 },
        { N("a//b"), ROUTE_NAME_EMPTY_SEGMENT, 2 },
        { N("a///b"), ROUTE_NAME_EMPTY_SEGMENT, 2 },
        { N("ab/cd//"), ROUTE_NAME_EMPTY_SEGMENT, 6 },
        { N("a/b//c"), ROUTE_NAME_EMPTY_SEGMENT, 4 }
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_dashes(void)
{
    static const test_case_t  cases[] = {
        { N("-"), ROUTE_NAME_LEADING_DASH, 0 },
        { N("--"), ROUTE_NAME_LEADING_DASH, 0 },
        { N("-a"), ROUTE_NAME_LEADING_DASH, 0 },
        { N("-/a"), ROUTE_NAME_LEADING_DASH, 0 },
        { N("a/-b"), ROUTE_NAME_LEADING_DASH, 2 },
        { N("a/b/-"), ROUTE_NAME_LEADING_DASH, 4 },
        { N("abc/def/-ghi"), ROUTE_NAME_LEADING_DASH, 8 },
        { N("a-"), OK, 0 },
        { N("a-b"), OK, 0 },
        { N("a--b"), OK, 0 },
        { N("a/b-c"), OK, 0 },
        { N("a/b-"), OK, 0 },
        { N("a-/b-/c-"), OK, 0 },
        { N("_-"), OK, 0 },
        { N("0-"), OK, 0 }
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_bytes(void)
{
    static const test_case_t  cases[] = {
        { N("\0"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a\0"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\0b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("hello\0.lua"), ROUTE_NAME_BAD_BYTE, 5 },
        { N("a/b\0/../c"), ROUTE_NAME_BAD_BYTE, 3 },
        { N("a/\0"), ROUTE_NAME_BAD_BYTE, 2 },
        { N("\0\0\0"), ROUTE_NAME_BAD_BYTE, 0 },
        { N(" "), ROUTE_NAME_BAD_BYTE, 0 },
        { N(" a"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a "), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a b"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\tb"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\nb"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\n"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\r\n"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("\x1b[31m"), ROUTE_NAME_BAD_BYTE, 0 },
        { N("a\x7f"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\x01"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("a\x1f"), ROUTE_NAME_BAD_BYTE, 1 },
        { N("ab/cd\x80"), ROUTE_NAME_BAD_BYTE, 5 },
        { N("\xff"), ROUTE_NAME_BAD_BYTE, 0 }
    };

    test_table(cases, sizeof(cases) / sizeof(cases[0]), dflt);
}


static void
test_segment_length(void)
{
    unsigned char  *name;

    /* one segment of 64 bytes, then 65 */

    name = make_name(1, 64);
    is_name(name, 64, dflt, OK, 0);
    free(name);

    name = make_name(1, 65);
    is_name(name, 65, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 64);
    free(name);

    /* three segments of 64 bytes, then the last one of 65 */

    name = make_name(3, 64);
    is_name(name, 3 * 65 - 1, dflt, OK, 0);
    free(name);

    name = make_name(3, 65);
    is_name(name, 65, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 64);
    free(name);

    name = make_name(3, 64);
    name[2 * 65 + 64] = 'x';
    name[2 * 65 + 65] = '\0';
    is_name(name, 3 * 65, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 2 * 65 + 64);
    free(name);

    /* the second segment too long, with a valid last one */

    name = make_name(3, 64);
    name[65 + 64] = 'x';
    is_name(name, 3 * 65 - 1, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 65 + 64);
    free(name);

    /* dashes count, and a bad byte after 65 bytes comes second */

    name = make_name(1, 70);
    memset(name + 1, '-', 69);
    is_name(name, 65, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 64);
    is_name(name, 64, dflt, OK, 0);
    name[65] = '.';
    is_name(name, 66, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 64);
    name[64] = '.';
    is_name(name, 66, dflt, ROUTE_NAME_BAD_BYTE, 64);
    name[63] = '/';
    is_name(name, 66, dflt, ROUTE_NAME_BAD_BYTE, 64);
    free(name);
}


static void
test_segments(void)
{
    unsigned char  *name;

    name = make_name(8, 1);
    is_name(name, 15, dflt, OK, 0);
    is_name(N("a/b/c/d/e/f/g/h"), dflt, OK, 0);
    free(name);

    name = make_name(9, 1);
    is_name(name, 17, dflt, ROUTE_NAME_TOO_MANY_SEGMENTS, 16);
    is_name(name, 16, dflt, ROUTE_NAME_EMPTY_SEGMENT, 16);
    free(name);

    name = make_name(8, 31);
    is_name(name, 8 * 32 - 1, dflt, OK, 0);
    free(name);

    name = make_name(9, 27);
    is_name(name, 9 * 28 - 1, dflt, ROUTE_NAME_TOO_MANY_SEGMENTS, 8 * 28);
    free(name);

    /* the ninth segment is rejected whatever it holds */

    is_name(N("a/b/c/d/e/f/g/h/-"), dflt, ROUTE_NAME_TOO_MANY_SEGMENTS, 16);
    is_name(N("a/b/c/d/e/f/g/h/."), dflt, ROUTE_NAME_TOO_MANY_SEGMENTS, 16);
    is_name(N("a/b/c/d/e/f/g/h//"), dflt, ROUTE_NAME_TOO_MANY_SEGMENTS, 16);
    is_name(N("a/b/c/d/e/f/g/h/i/j/k"), dflt,
            ROUTE_NAME_TOO_MANY_SEGMENTS, 16);

    /* but a violation in the first eight comes first */

    is_name(N("a/b/c/d/e/f/g/./i"), dflt, ROUTE_NAME_BAD_BYTE, 14);
    is_name(N("a/b/c/d/e/f//h/i"), dflt, ROUTE_NAME_EMPTY_SEGMENT, 12);
}


static void
test_length(void)
{
    size_t          len;
    unsigned char  *name;

    /* 4 segments of 63 bytes and 3 slashes: 255 bytes */

    name = make_name(4, 63);
    is_name(name, 255, dflt, OK, 0);
    free(name);

    /* one more byte in the last segment */

    name = make_name(4, 64);
    is_name(name, 4 * 65 - 2, dflt, ROUTE_NAME_TOO_LONG, 255);
    is_name(name, 4 * 65 - 1, dflt, ROUTE_NAME_TOO_LONG, 255);
    free(name);

    /* 8 segments of 31 bytes is 255 bytes; 32 bytes is too long */

    name = make_name(8, 31);
    is_name(name, 255, dflt, OK, 0);
    free(name);

    name = make_name(8, 32);
    is_name(name, 8 * 33 - 1, dflt, ROUTE_NAME_TOO_LONG, 255);
    free(name);

    /* the length comes first, before any other violation */

    len = 100000;

    name = malloc(len);
    if (name == NULL) {
        diag("out of memory");
        exit(2);
    }

    memset(name, '.', len);
    is_name(name, 256, dflt, ROUTE_NAME_TOO_LONG, 255);
    is_name(name, len, dflt, ROUTE_NAME_TOO_LONG, 255);
    is_name(name, 255, dflt, ROUTE_NAME_BAD_BYTE, 0);

    memset(name, '/', len);
    is_name(name, 256, dflt, ROUTE_NAME_TOO_LONG, 255);
    is_name(name, 255, dflt, ROUTE_NAME_EMPTY_SEGMENT, 0);

    memset(name, 'a', len);
    is_name(name, len, dflt, ROUTE_NAME_TOO_LONG, 255);
    is_name(name, 65, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 64);
    is_name(name, 64, dflt, OK, 0);

    free(name);
}


/*
 * Lengths and violations on and around the edges of the 16-byte chunks
 * and 64-bit mask words of the SSE2 path, which takes names of up to 255
 * bytes; longer ones, and max_segment_length under 62, are walked byte by
 * byte.  Checked by hand first, then against the model.
 */

static void
test_chunk_boundaries(void)
{
    size_t                i, j, k, l, s, len, pos, count, bad, off1, off2;
    unsigned char         name[300];
    route_name_rc_e       rc1, rc2;
    route_name_limits_t   limits[4];

    static const size_t  lengths[] = {
        1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49,
        63, 64, 65, 127, 128, 129, 191, 192, 193, 254, 255, 256, 257
    };

    static const size_t  positions[] = {
        0, 1, 2, 14, 15, 16, 17, 30, 31, 32, 33, 47, 48, 62, 63, 64, 65,
        126, 127, 128, 129, 191, 192, 193, 253, 254, 255, 256
    };

    /* a "/" after every step - 1 bytes */

    static const size_t  steps[] = { 16, 17, 32, 33, 63, 64, 65, 66, 300 };

    static const unsigned char  bytes[] = {
        '.', '/', '-', 'a', '_', '\0', 0x80, 0xff
    };

    static const unsigned char  word[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";

    memset(name, 'a', sizeof(name));

    name[15] = '.';
    is_name(name, 16, dflt, ROUTE_NAME_BAD_BYTE, 15);
    is_name(name, 15, dflt, OK, 0);
    name[15] = '/';
    is_name(name, 16, dflt, ROUTE_NAME_EMPTY_SEGMENT, 16);
    name[16] = '-';
    is_name(name, 17, dflt, ROUTE_NAME_LEADING_DASH, 16);
    name[16] = '/';
    is_name(name, 33, dflt, ROUTE_NAME_EMPTY_SEGMENT, 16);
    name[16] = 'a';
    name[31] = '/';
    name[32] = '.';
    is_name(name, 33, dflt, ROUTE_NAME_BAD_BYTE, 32);
    name[32] = 'a';
    name[63] = '\0';
    is_name(name, 64, dflt, ROUTE_NAME_BAD_BYTE, 63);
    name[63] = '/';
    is_name(name, 64, dflt, ROUTE_NAME_EMPTY_SEGMENT, 64);
    is_name(name, 65, dflt, OK, 0);
    name[64] = '-';
    is_name(name, 65, dflt, ROUTE_NAME_LEADING_DASH, 64);
    name[64] = 'a';

    /* a segment of 64 bytes, 101 to 164, across the words 1 and 2 */

    name[100] = '/';
    name[165] = '/';
    name[229] = '/';
    is_name(name, 165, dflt, OK, 0);
    is_name(name, 166, dflt, ROUTE_NAME_EMPTY_SEGMENT, 166);
    is_name(name, 255, dflt, OK, 0);
    name[165] = 'a';
    is_name(name, 166, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 165);
    is_name(name, 255, dflt, ROUTE_NAME_SEGMENT_TOO_LONG, 165);
    name[165] = '/';
    name[254] = '/';
    is_name(name, 255, dflt, ROUTE_NAME_EMPTY_SEGMENT, 255);

    limits[0] = route_name_default_limits;

    limits[1].max_length = 1000;
    limits[1].max_segments = 1000;
    limits[1].max_segment_length = 64;

    limits[2].max_length = 1000;
    limits[2].max_segments = 8;
    limits[2].max_segment_length = 62;

    limits[3].max_length = 256;
    limits[3].max_segments = 16;
    limits[3].max_segment_length = 61;

    for (k = 0; k < 4; k++) {
        count = 0;
        bad = 0;

        for (l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
            len = lengths[l];

            for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {

                for (i = 0; i < len; i++) {
                    name[i] = (i % steps[s] == steps[s] - 1 && i < len - 1)
                              ? '/' : word[(i * 7 + s) % (sizeof(word) - 1)];
                }

                /* the name as it is, then a byte changed at each edge */

                for (j = 0; j <= sizeof(positions) / sizeof(positions[0]); j++)
                {
                    pos = (j == 0) ? len : positions[j - 1];

                    if (pos > len) {
                        continue;
                    }

                    if (pos == len) {
                        pos = len - 1;
                    }

                    for (i = 0; i < sizeof(bytes); i++) {
                        name[len] = name[pos];
                        name[pos] = (j == 0 && i == 0) ? name[pos] : bytes[i];

                        off1 = 999;
                        off2 = 999;
                        rc1 = route_name_check(name, len, &limits[k], &off1);
                        rc2 = model(name, len, &limits[k], &off2);

                        if (rc1 != rc2 || (rc1 != OK && off1 != off2)) {
                            if (bad++ < 5) {
                                diag("\"%s\": %s at %zu, model %s at %zu",
                                     printable(name, len),
                                     route_name_reason(rc1), off1,
                                     route_name_reason(rc2), off2);
                            }
                        }

                        name[pos] = name[len];
                        count++;
                    }
                }
            }
        }

        ok(bad == 0, "%zu names around chunk edges agree with the model, "
           "limits %zu", count, k);
    }
}


static void
test_custom_limits(void)
{
    unsigned char        *name;
    route_name_limits_t   limits;

    limits = route_name_default_limits;
    limits.max_segments = 1;

    is_name(N("a"), &limits, OK, 0);
    is_name(N("abc-def"), &limits, OK, 0);
    is_name(N("a/b"), &limits, ROUTE_NAME_TOO_MANY_SEGMENTS, 2);
    is_name(N("a/"), &limits, ROUTE_NAME_EMPTY_SEGMENT, 2);
    is_name(N("a.b"), &limits, ROUTE_NAME_BAD_BYTE, 1);

    limits.max_segments = 0;

    is_name(N("a"), &limits, ROUTE_NAME_TOO_MANY_SEGMENTS, 0);
    is_name(N("-"), &limits, ROUTE_NAME_TOO_MANY_SEGMENTS, 0);
    is_name(N(""), &limits, ROUTE_NAME_EMPTY, 0);

    limits = route_name_default_limits;
    limits.max_length = 3;

    is_name(N("abc"), &limits, OK, 0);
    is_name(N("a/b"), &limits, OK, 0);
    is_name(N("abcd"), &limits, ROUTE_NAME_TOO_LONG, 3);
    is_name(N("...."), &limits, ROUTE_NAME_TOO_LONG, 3);

    limits.max_length = 0;

    is_name(N("a"), &limits, ROUTE_NAME_TOO_LONG, 0);
    is_name(N(""), &limits, ROUTE_NAME_EMPTY, 0);

    limits = route_name_default_limits;
    limits.max_segment_length = 1;

    is_name(N("a/b/c"), &limits, OK, 0);
    is_name(N("ab"), &limits, ROUTE_NAME_SEGMENT_TOO_LONG, 1);
    is_name(N("a/bc"), &limits, ROUTE_NAME_SEGMENT_TOO_LONG, 3);
    is_name(N("a-"), &limits, ROUTE_NAME_SEGMENT_TOO_LONG, 1);

    limits.max_segment_length = 0;

    is_name(N("a"), &limits, ROUTE_NAME_SEGMENT_TOO_LONG, 0);

    /* limits well past the defaults */

    limits.max_length = (size_t) -1;
    limits.max_segments = 1000;
    limits.max_segment_length = 1000;

    name = make_name(1000, 1000);
    is_name(name, 1000 * 1001 - 1, &limits, OK, 0);
    is_name(name, 1001, &limits, ROUTE_NAME_EMPTY_SEGMENT, 1001);

    name[1000 * 1001 - 1] = '/';
    name[1000 * 1001] = 'x';
    is_name(name, 1000 * 1001 + 1, &limits,
            ROUTE_NAME_TOO_MANY_SEGMENTS, 1000 * 1001);
    free(name);

    limits.max_segments = 3;
    limits.max_segment_length = 2;
    limits.max_length = 8;

    is_name(N("ab/cd/ef"), &limits, OK, 0);
    is_name(N("ab/cd/efg"), &limits, ROUTE_NAME_TOO_LONG, 8);
    is_name(N("ab/cd/e/"), &limits, ROUTE_NAME_EMPTY_SEGMENT, 8);
    is_name(N("a/b/c/d"), &limits, ROUTE_NAME_TOO_MANY_SEGMENTS, 6);
    is_name(N("abc/d"), &limits, ROUTE_NAME_SEGMENT_TOO_LONG, 2);
}


/*
 * Every one-byte name: a word byte is a name, "-" a leading dash, "/" an
 * empty segment, and anything else a bad byte.
 */

static void
test_all_single_bytes(void)
{
    int              c;
    unsigned char    byte;
    route_name_rc_e  rc;

    for (c = 0; c < 256; c++) {
        byte = (unsigned char) c;

        if (word(c)) {
            rc = OK;

        } else if (c == '-') {
            rc = ROUTE_NAME_LEADING_DASH;

        } else if (c == '/') {
            rc = ROUTE_NAME_EMPTY_SEGMENT;

        } else {
            rc = ROUTE_NAME_BAD_BYTE;
        }

        is_name(&byte, 1, dflt, rc, 0);
    }
}


/*
 * Every byte inside a segment ("xBy") and at the start of a later one
 * ("x/By"), in one assertion for each class of bytes.
 */

static void
test_all_bytes_in_context(void)
{
    int              c;
    size_t           off, bad_inside, bad_later, bad_high;
    unsigned char    inside[3], later[4];
    route_name_rc_e  rc;

    bad_inside = 0;
    bad_later = 0;
    bad_high = 0;

    for (c = 0; c < 256; c++) {
        inside[0] = 'x';
        inside[1] = (unsigned char) c;
        inside[2] = 'y';

        off = 99;
        rc = route_name_check(inside, 3, dflt, &off);

        if (word(c) || c == '-' || c == '/') {
            if (rc != OK) {
                diag("\"x\\x%02xy\": %s", c, route_name_reason(rc));
                bad_inside++;
            }

        } else if (rc != ROUTE_NAME_BAD_BYTE || off != 1) {
            diag("\"x\\x%02xy\": %s at %zu", c, route_name_reason(rc), off);
            bad_inside++;
        }

        later[0] = 'x';
        later[1] = '/';
        later[2] = (unsigned char) c;
        later[3] = 'y';

        off = 99;
        rc = route_name_check(later, 4, dflt, &off);

        if (word(c)) {
            if (rc != OK) {
                diag("\"x/\\x%02xy\": %s", c, route_name_reason(rc));
                bad_later++;
            }

        } else if (off != 2
                   || rc != (c == '-' ? ROUTE_NAME_LEADING_DASH
                             : c == '/' ? ROUTE_NAME_EMPTY_SEGMENT
                             : ROUTE_NAME_BAD_BYTE))
        {
            diag("\"x/\\x%02xy\": %s at %zu", c, route_name_reason(rc), off);
            bad_later++;
        }

        if (c >= 0x80) {
            off = 99;
            rc = route_name_check(later + 2, 1, dflt, &off);

            if (rc != ROUTE_NAME_BAD_BYTE || off != 0) {
                bad_high++;
            }

            off = 99;
            rc = route_name_check(inside, 2, dflt, &off);

            if (rc != ROUTE_NAME_BAD_BYTE || off != 1) {
                bad_high++;
            }
        }
    }

    ok(bad_inside == 0, "all 256 bytes inside a segment, \"x?y\"");
    ok(bad_later == 0, "all 256 bytes starting a later segment, \"x/?y\"");
    ok(bad_high == 0, "all bytes 0x80-0xff alone and last are bad bytes");

    for (c = 0x80; c < 256; c += 0x10) {
        inside[0] = 'a';
        inside[1] = (unsigned char) c;
        inside[2] = (unsigned char) (c + 0x0f);
        is_name(inside, 3, dflt, ROUTE_NAME_BAD_BYTE, 1);
    }
}


/*
 * The core against a model written from the grammar, on every name of up
 * to 5 bytes over an alphabet of the bytes that matter, and on random
 * names, under several limits.
 */

static void
test_against_model(void)
{
    size_t                i, j, k, x, len, n, count, bad, off1, off2;
    unsigned char         name[512];
    route_name_rc_e       rc1, rc2;
    route_name_limits_t   limits[4];

    static const unsigned char  alphabet[] = {
        'a', 'Z', '0', '_', '-', '/', '.', '%', '\\', '\0', '\n', 0x80, 0xff
    };

    static const unsigned char  biased[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
        "abcdefghijklmnopqrstuvwxyz0123456789-/";

    limits[0] = route_name_default_limits;

    limits[1].max_length = 4;
    limits[1].max_segments = 2;
    limits[1].max_segment_length = 2;

    limits[2].max_length = 5;
    limits[2].max_segments = 1;
    limits[2].max_segment_length = 5;

    limits[3].max_length = 3;
    limits[3].max_segments = 3;
    limits[3].max_segment_length = 1;

    for (k = 0; k < 4; k++) {
        count = 0;
        bad = 0;

        for (len = 0; len <= 5; len++) {

            n = 1;
            for (j = 0; j < len; j++) {
                n *= sizeof(alphabet);
            }

            for (i = 0; i < n; i++) {
                x = i;

                for (j = 0; j < len; j++) {
                    name[j] = alphabet[x % sizeof(alphabet)];
                    x /= sizeof(alphabet);
                }

                off1 = 999;
                off2 = 999;
                rc1 = route_name_check(name, len, &limits[k], &off1);
                rc2 = model(name, len, &limits[k], &off2);

                if (rc1 != rc2 || (rc1 != OK && off1 != off2)) {
                    if (bad++ < 5) {
                        diag("\"%s\": %s at %zu, model %s at %zu",
                             printable(name, len),
                             route_name_reason(rc1), off1,
                             route_name_reason(rc2), off2);
                    }
                }

                count++;
            }
        }

        ok(bad == 0, "%zu short names agree with the model, limits %zu",
           count, k);
    }

    /*
     * random names around the limits, mostly word bytes with a slash now
     * and then, and a random byte once in a while
     */

    limits[1].max_length = 40;
    limits[1].max_segments = 3;
    limits[1].max_segment_length = 10;

    for (k = 0; k < 2; k++) {
        bad = 0;

        for (i = 0; i < 100000; i++) {
            len = 1 + rand_next() % (limits[k].max_length + 45);

            for (j = 0; j < len; j++) {
                name[j] = biased[rand_next() % (sizeof(biased) - 1)];

                if (rand_next() % 1000 == 0) {
                    name[j] = (unsigned char) rand_next();
                }
            }

            off1 = 999;
            off2 = 999;
            rc1 = route_name_check(name, len, &limits[k], &off1);
            rc2 = model(name, len, &limits[k], &off2);

            if (rc1 != rc2 || (rc1 != OK && off1 != off2)) {
                if (bad++ < 5) {
                    diag("\"%s\": %s at %zu, model %s at %zu",
                         printable(name, len),
                         route_name_reason(rc1), off1,
                         route_name_reason(rc2), off2);
                }
            }
        }

        ok(bad == 0, "100000 random names agree with the model, limits %zu",
           k);
    }
}


static void
test_table(const test_case_t *cases, size_t n,
    const route_name_limits_t *limits)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        is_name(cases[i].name, cases[i].len, limits, cases[i].rc,
                cases[i].offset);
    }
}


/* one assertion: the verdict, and the offset when it is a violation */

static void
is_name(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, route_name_rc_e rc, size_t offset)
{
    int               pass;
    size_t            off;
    const char       *shown;
    route_name_rc_e   got;

    off = (size_t) -1;
    got = route_name_check(name, len, limits, &off);

    pass = (got == rc && (rc == OK || off == offset));

    shown = printable(name, len);

    if (rc == OK) {
        ok(pass, "\"%s\" (%zu bytes) is ok", shown, len);

    } else {
        ok(pass, "\"%s\" (%zu bytes) is %s at %zu",
           shown, len, route_name_reason(rc), offset);
    }

    if (!pass) {
        diag("got %s at %zu", route_name_reason(got), off);
    }
}


static void
ok(int cond, const char *fmt, ...)
{
    va_list  args;

    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %u - ", cond ? "" : "not ", tests);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
}


static void
diag(const char *fmt, ...)
{
    va_list  args;

    printf("# ");

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
}


/* the name with bytes escaped, shortened past 72 bytes, in a static buffer */

static const char *
printable(const unsigned char *name, size_t len)
{
    char         *p;
    size_t        i, shown;
    static char   buf[72 * 4 + sizeof("...")];

    shown = len > 72 ? 72 : len;
    p = buf;

    for (i = 0; i < shown; i++) {

        if (name[i] == '\\' || name[i] == '"') {
            *p++ = '\\';
            *p++ = (char) name[i];

        } else if (name[i] < 0x20 || name[i] >= 0x7f) {
            p += sprintf(p, "\\x%02x", name[i]);

        } else {
            *p++ = (char) name[i];
        }
    }

    if (shown < len) {
        memcpy(p, "...", 3);
        p += 3;
    }

    *p = '\0';

    return buf;
}


/*
 * "segments" segments of "segment_length" bytes joined with "/", each
 * made of word bytes and dashes, followed by a NUL that is not part of
 * the name; to be freed.
 */

static unsigned char *
make_name(size_t segments, size_t segment_length)
{
    size_t          i, j, len;
    unsigned char  *name, *p;

    /* 63 bytes that may start a segment, then the dash */

    static const char  bytes[] = "abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

    len = segments * (segment_length + 1);

    name = malloc(len + 1);
    if (name == NULL) {
        diag("out of memory");
        exit(2);
    }

    p = name;

    for (i = 0; i < segments; i++) {

        if (i > 0) {
            *p++ = '/';
        }

        for (j = 0; j < segment_length; j++) {
            *p++ = (unsigned char) bytes[(i + j) % (j == 0 ? 63 : 64)];
        }
    }

    *p++ = '\0';
    *p = '\0';

    return name;
}


/*
 * The grammar written again, plainly, without the class table: split
 * into segments and check each; the first violation from the left wins,
 * the length first of all.
 */

static route_name_rc_e
model(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset)
{
    size_t  i, start, segments;

    *offset = 0;

    if (len == 0) {
        return ROUTE_NAME_EMPTY;
    }

    if (len > limits->max_length) {
        *offset = limits->max_length;
        return ROUTE_NAME_TOO_LONG;
    }

    start = 0;
    segments = 0;

    for ( ;; ) {
        *offset = start;

        if (start == len) {
            return ROUTE_NAME_EMPTY_SEGMENT;
        }

        if (++segments > limits->max_segments) {
            return ROUTE_NAME_TOO_MANY_SEGMENTS;
        }

        if (name[start] == '/') {
            return ROUTE_NAME_EMPTY_SEGMENT;
        }

        if (name[start] == '-') {
            return ROUTE_NAME_LEADING_DASH;
        }

        /* the other bytes of the segment are checked below */

        for (i = start; i < len && name[i] != '/'; i++) {

            if (!word(name[i]) && name[i] != '-') {
                *offset = i;
                return ROUTE_NAME_BAD_BYTE;
            }

            if (i - start == limits->max_segment_length) {
                *offset = i;
                return ROUTE_NAME_SEGMENT_TOO_LONG;
            }
        }

        if (i == len) {
            return ROUTE_NAME_OK;
        }

        start = i + 1;
    }
}


/* ALPHA / DIGIT / "_" */

static int
word(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}


/* xorshift64, with a fixed seed: the same names on every run */

static unsigned long
rand_next(void)
{
    rand_state ^= rand_state << 13;
    rand_state ^= rand_state >> 7;
    rand_state ^= rand_state << 17;

    return rand_state;
}
