
/*
 * The route name grammar core against PCRE2 with JIT, on the same names.
 *
 * Two regular expressions state the same grammar with the same default
 * limits: A in its plain form, B with possessive repeats.  These change
 * no verdict (a segment byte is never "/", so there is nothing to give
 * back) but spare the matcher its backtracking, which makes B the
 * stronger opponent; the speed-up is taken against the faster of the
 * two.  Note "\z": "$" would also match before a final newline.
 *
 * At start-up the core and both regexes are run over the whole name set,
 * and the program aborts if any verdict differs: the figures compare
 * implementations of one thing.
 *
 * Each variant runs rounds of about BENCH_ROUND_NS over the name set;
 * the best of BENCH_ROUNDS rounds is kept.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH  8
#include <pcre2.h>

#include "route_name.h"


#define BENCH_NAMES     4096
#define BENCH_ROUNDS    5
#define BENCH_ROUND_NS  100000000.0         /* 0.1 s, 0.5 s a variant */
#define BENCH_TARGET    3.0

/* the grammar with the default limits, ROUTE_NAME_MAX_* */

#define BENCH_FIRST    "[A-Za-z0-9_]"
#define BENCH_REST     "[A-Za-z0-9_-]"

#define BENCH_REGEX_A                                                        \
    "^(?=.{1,255}\\z)"                                                       \
    BENCH_FIRST BENCH_REST "{0,63}"                                          \
    "(?:/" BENCH_FIRST BENCH_REST "{0,63}){0,7}\\z"

#define BENCH_REGEX_B                                                        \
    "^(?=.{1,255}+\\z)"                                                      \
    BENCH_FIRST BENCH_REST "{0,63}+"                                         \
    "(?:/" BENCH_FIRST BENCH_REST "{0,63}+){0,7}+\\z"


typedef struct {
    const unsigned char  *data;
    size_t                len;
} bench_name_t;


typedef struct {
    bench_name_t          *names;
    size_t                 n;
    size_t                 bytes;
    size_t                 valid;
} bench_set_t;


typedef struct {
    const char            *name;
    const char            *pattern;
    pcre2_code            *code;
    pcre2_match_data      *match_data;
    double                 ns;
} bench_regex_t;


typedef size_t (*bench_pass_pt)(const bench_set_t *set,
    const bench_regex_t *re);


static void bench_generate(bench_set_t *set);
static void bench_add(bench_set_t *set, const unsigned char *data,
    size_t len);
static size_t bench_segments(unsigned char *p, size_t segments,
    size_t min, size_t max);
static void bench_compile(bench_regex_t *re);
static int bench_pcre2_match(const bench_regex_t *re,
    const bench_name_t *name);
static void bench_verify(bench_set_t *set, const bench_regex_t *re);
static size_t bench_pass_core(const bench_set_t *set,
    const bench_regex_t *re);
static size_t bench_pass_pcre2(const bench_set_t *set,
    const bench_regex_t *re);
static double bench_time(const bench_set_t *set, bench_pass_pt pass,
    const bench_regex_t *re);
static double bench_now(void);
static unsigned long bench_rand(void);
static void *bench_alloc(size_t size);


static volatile size_t  bench_sink;
static unsigned long    bench_rand_state = 0x9e3779b97f4a7c15UL;


static const unsigned char  bench_first[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";

static const unsigned char  bench_rest[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

static const char  *bench_fixed[] = {
    "hello",
    "v1/time",
    "a",
    "api/v2/users/by-id",
    "_private/x",
    "../../etc/passwd",
    "%2e%2e/x",
    "a%2fb",
    "..",
    ".hidden",
    "a/../b",
    "a/.",
    "a\\b",
    "/",
    "/etc/passwd",
    "a//b",
    "a/",
    "-a",
    "a/-b",
    "hello.lua",
    "v1/time?x=1",
    "caf\xc3\xa9",
    ""
};


int
main(void)
{
    double          core, best;
    size_t          i;
    bench_set_t     set;
    bench_regex_t  *re;

    static bench_regex_t  regexes[] = {
        { "A", BENCH_REGEX_A, NULL, NULL, 0 },
        { "B", BENCH_REGEX_B, NULL, NULL, 0 }
    };

    memset(&set, 0, sizeof(bench_set_t));

    bench_generate(&set);

    for (i = 0; i < 2; i++) {
        bench_compile(&regexes[i]);
        bench_verify(&set, &regexes[i]);
    }

    printf("names          %zu (%zu valid), %zu bytes, %.1f bytes/name\n",
           set.n, set.valid, set.bytes, (double) set.bytes / set.n);

    for (i = 0; i < 2; i++) {
        printf("regex %s        %s\n", regexes[i].name, regexes[i].pattern);
    }

    core = bench_time(&set, bench_pass_core, NULL);

    printf("grammar core   %6.1f ns/name   %5.2f ns/byte\n",
           core / set.n, core / set.bytes);

    best = 0;

    for (i = 0; i < 2; i++) {
        re = &regexes[i];
        re->ns = bench_time(&set, bench_pass_pcre2, re);

        printf("pcre2 jit %s    %6.1f ns/name   %5.2f ns/byte   core %.1fx\n",
               re->name, re->ns / set.n, re->ns / set.bytes, re->ns / core);

        if (i == 0 || re->ns < best) {
            best = re->ns;
        }
    }

    printf("speed-up       %6.1fx (target >= %.0fx%s)\n",
           best / core, BENCH_TARGET,
           best / core >= BENCH_TARGET ? "" : ", MISSED");

    for (i = 0; i < 2; i++) {
        pcre2_match_data_free(regexes[i].match_data);
        pcre2_code_free(regexes[i].code);
    }

    return 0;
}


/*
 * A fixed list, then a deterministic mix: short, nested and long valid
 * names; names of 250 bytes with a bad byte at the end; names too long,
 * with a segment too long, with too many segments; dots, encodings and
 * dashes; random bytes.
 */

static void
bench_generate(bench_set_t *set)
{
    size_t          i, j, len, kind;
    unsigned char   buf[512];

    static const char  *traversal[] = {
        "../", "./", "%2e%2e/", "..%2f", "..\\", ".", "%00", "/"
    };

    set->names = bench_alloc(BENCH_NAMES * sizeof(bench_name_t));

    for (i = 0; i < sizeof(bench_fixed) / sizeof(bench_fixed[0]); i++) {
        bench_add(set, (const unsigned char *) bench_fixed[i],
                  strlen(bench_fixed[i]));
    }

    while (set->n < BENCH_NAMES) {

        kind = bench_rand() % 20;

        switch (kind) {

        case 0: case 1: case 2: case 3: case 4:
            /* short and valid: "hello", "v1/time" */
            len = bench_segments(buf, 1 + bench_rand() % 3, 1, 12);
            break;

        case 5: case 6: case 7:
            /* nested and valid */
            len = bench_segments(buf, 3 + bench_rand() % 4, 5, 30);
            break;

        case 8: case 9: case 10:
            /* about 200 bytes in 4 to 8 segments, valid */
            j = 4 + bench_rand() % 5;
            len = bench_segments(buf, j, 200 / j - 3, 200 / j + 1);
            break;

        case 11: case 12:
            /* 250 valid bytes, then a bad one */
            len = bench_segments(buf, 5, 49, 49);
            buf[len++] = "./%\\ \x80\xff\n"[bench_rand() % 8];
            break;

        case 13:
            /* too long: 264 to 447 bytes */
            len = bench_segments(buf, 5 + bench_rand() % 3, 52, 63);
            break;

        case 14:
            /* a segment of 65 to 80 bytes */
            len = bench_segments(buf, 1, 1, 20);
            buf[len++] = '/';
            len += bench_segments(buf + len, 1, 65, 80);
            break;

        case 15:
            /* 9 to 12 segments */
            len = bench_segments(buf, 9 + bench_rand() % 4, 1, 8);
            break;

        case 16: case 17:
            /* a traversal or an encoding somewhere */
            len = bench_segments(buf, 1 + bench_rand() % 3, 1, 12);
            j = bench_rand() % (sizeof(traversal) / sizeof(traversal[0]));

            if (bench_rand() % 2) {
                memmove(buf + strlen(traversal[j]), buf, len);
                memcpy(buf, traversal[j], strlen(traversal[j]));

            } else {
                memcpy(buf + len, traversal[j], strlen(traversal[j]));
            }

            len += strlen(traversal[j]);
            break;

        case 18:
            /* a leading dash, or an empty segment */
            len = bench_segments(buf, 2 + bench_rand() % 3, 1, 12);
            j = bench_rand() % len;

            if (buf[j] != '/') {
                buf[j] = (bench_rand() % 2) ? '/' : '-';
            }

            break;

        default:
            /* random bytes */
            len = 1 + bench_rand() % 64;

            for (j = 0; j < len; j++) {
                buf[j] = (unsigned char) bench_rand();
            }

            break;
        }

        bench_add(set, buf, len);
    }
}


static void
bench_add(bench_set_t *set, const unsigned char *data, size_t len)
{
    unsigned char  *p;

    p = bench_alloc(len + 1);
    memcpy(p, data, len);
    p[len] = '\0';

    set->names[set->n].data = p;
    set->names[set->n].len = len;
    set->n++;
    set->bytes += len;
}


/* writes valid segments of min to max bytes joined with "/" */

static size_t
bench_segments(unsigned char *p, size_t segments, size_t min, size_t max)
{
    size_t          i, j, len;
    unsigned char  *start;

    start = p;

    for (i = 0; i < segments; i++) {

        if (i > 0) {
            *p++ = '/';
        }

        len = min + bench_rand() % (max - min + 1);

        *p++ = bench_first[bench_rand() % (sizeof(bench_first) - 1)];

        for (j = 1; j < len; j++) {
            *p++ = bench_rest[bench_rand() % (sizeof(bench_rest) - 1)];
        }
    }

    return (size_t) (p - start);
}


static void
bench_compile(bench_regex_t *re)
{
    int          rc;
    size_t       off;
    PCRE2_UCHAR  msg[256];

    re->code = pcre2_compile((PCRE2_SPTR) re->pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_DOTALL, &rc, &off, NULL);

    if (re->code == NULL) {
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fprintf(stderr, "pcre2_compile(%s) failed at %zu: %s\n",
                re->name, off, msg);
        exit(1);
    }

    rc = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);

    if (rc != 0) {
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fprintf(stderr, "pcre2_jit_compile(%s) failed: %s\n", re->name, msg);
        exit(1);
    }

    re->match_data = pcre2_match_data_create_from_pattern(re->code, NULL);

    if (re->match_data == NULL) {
        fprintf(stderr, "pcre2_match_data_create_from_pattern() failed\n");
        exit(1);
    }
}


static int
bench_pcre2_match(const bench_regex_t *re, const bench_name_t *name)
{
    int          rc;
    PCRE2_UCHAR  msg[256];

    rc = pcre2_jit_match(re->code, name->data, name->len, 0, 0,
                         re->match_data, NULL);

    if (rc >= 0) {
        return 1;
    }

    if (rc == PCRE2_ERROR_NOMATCH) {
        return 0;
    }

    pcre2_get_error_message(rc, msg, sizeof(msg));
    fprintf(stderr, "pcre2_jit_match(%s) failed: %s\n", re->name, msg);
    exit(1);
}


/* both must say the same of every name, or the figures mean nothing */

static void
bench_verify(bench_set_t *set, const bench_regex_t *re)
{
    int      core, regex;
    size_t   i, j;

    set->valid = 0;

    for (i = 0; i < set->n; i++) {
        core = route_name_check(set->names[i].data, set->names[i].len,
                                &route_name_default_limits, NULL)
               == ROUTE_NAME_OK;

        regex = bench_pcre2_match(re, &set->names[i]);

        if (core != regex) {
            fprintf(stderr, "verdicts differ on name %zu (%zu bytes): "
                    "core %s, regex %s %s\n  \"", i, set->names[i].len,
                    core ? "ok" : "reject", re->name,
                    regex ? "ok" : "reject");

            for (j = 0; j < set->names[i].len; j++) {
                fprintf(stderr, "\\x%02x", set->names[i].data[j]);
            }

            fprintf(stderr, "\"\n");
            abort();
        }

        set->valid += core;
    }
}


static size_t
bench_pass_core(const bench_set_t *set, const bench_regex_t *re)
{
    size_t               i, valid;
    const bench_name_t  *name;

    (void) re;

    valid = 0;

    for (i = 0; i < set->n; i++) {
        name = &set->names[i];
        valid += route_name_check(name->data, name->len,
                                  &route_name_default_limits, NULL)
                 == ROUTE_NAME_OK;
    }

    return valid;
}


static size_t
bench_pass_pcre2(const bench_set_t *set, const bench_regex_t *re)
{
    size_t               i, valid;
    const bench_name_t  *name;

    valid = 0;

    for (i = 0; i < set->n; i++) {
        name = &set->names[i];
        valid += pcre2_jit_match(re->code, name->data, name->len, 0, 0,
                                 re->match_data, NULL)
                 >= 0;
    }

    return valid;
}


static double
bench_time(const bench_set_t *set, bench_pass_pt pass,
    const bench_regex_t *re)
{
    size_t   i, r, passes;
    double   start, elapsed, best;

    /* warm up, and find how many passes make a round */

    passes = 1;

    for ( ;; ) {
        start = bench_now();

        for (i = 0; i < passes; i++) {
            bench_sink += pass(set, re);
        }

        elapsed = bench_now() - start;

        if (elapsed >= BENCH_ROUND_NS / 10) {
            break;
        }

        passes *= 2;
    }

    passes = (size_t) (passes * BENCH_ROUND_NS / elapsed) + 1;

    best = 0;

    for (r = 0; r < BENCH_ROUNDS; r++) {
        start = bench_now();

        for (i = 0; i < passes; i++) {
            bench_sink += pass(set, re);
        }

        elapsed = (bench_now() - start) / passes;

        if (r == 0 || elapsed < best) {
            best = elapsed;
        }
    }

    return best;
}


static double
bench_now(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime()");
        exit(1);
    }

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


/* xorshift64 with a fixed seed: the same names on every run */

static unsigned long
bench_rand(void)
{
    bench_rand_state ^= bench_rand_state << 13;
    bench_rand_state ^= bench_rand_state >> 7;
    bench_rand_state ^= bench_rand_state << 17;

    return bench_rand_state;
}


static void *
bench_alloc(size_t size)
{
    void  *p;

    p = malloc(size);

    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }

    return p;
}
