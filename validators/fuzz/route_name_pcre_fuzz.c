
/*
 * libFuzzer target: route_name_check() against PCRE2 (with JIT) matching
 * the same grammar, built as a regular expression from the limits.
 *
 * The input is 3 bytes of limits and the name (route_name_fuzz.h).  The
 * name is checked under the limits of its header, and under each of a few
 * fixed sets: the defaults, and limits on either side of the edges of the
 * core's SSE2 path.  The core accepts a name exactly when the regex
 * matches it; anything else abort()s.
 *
 * The regex, as in bench/route_name_bench.c, with L, S and G the limits:
 *
 *   ^(?=.{1,L}+\z)[A-Za-z0-9_][A-Za-z0-9_-]{0,G-1}+
 *    (?:/[A-Za-z0-9_][A-Za-z0-9_-]{0,G-1}+){0,S-1}+\z
 *
 * compiled with PCRE2_DOTALL, so that "." is any byte, and "\z", since
 * "$" would also match before a final newline.  When a limit is 0 there
 * is no regex: no name is accepted.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH  8
#include <pcre2.h>

#include "route_name.h"
#include "route_name_fuzz.h"


/* compiled regexes for the limits of headers, direct mapped */
#define FUZZ_CACHE_SIZE  512


typedef struct {
    route_name_limits_t   limits;
    pcre2_code           *code;
} fuzz_regex_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_compare(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, fuzz_regex_t *re);
static fuzz_regex_t *fuzz_cached(const route_name_limits_t *limits);
static pcre2_code *fuzz_compile(const route_name_limits_t *limits);


static const route_name_limits_t  fuzz_fixed_limits[] = {
    { ROUTE_NAME_MAX_LENGTH, ROUTE_NAME_MAX_SEGMENTS,
      ROUTE_NAME_MAX_SEGMENT_LENGTH },
    { 255, 8, 61 },         /* walked: under the SSE2 path's limit */
    { 255, 8, 62 },         /* classified: its lowest limit */
    { 255, 8, 63 },
    { 255, 16, 255 },       /* one segment may fill the name */
    { 300, 10, 80 },        /* names of 256 to 300 bytes are walked */
    { 40, 3, 10 },
    { 4, 2, 2 },
    { 64, 1, 64 },
    { 1000, 100, 1000 }
};

#define FUZZ_NFIXED  (sizeof(fuzz_fixed_limits) / sizeof(fuzz_fixed_limits[0]))


static fuzz_regex_t       fuzz_fixed[FUZZ_NFIXED];
static fuzz_regex_t       fuzz_cache[FUZZ_CACHE_SIZE];
static pcre2_match_data  *fuzz_match_data;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                      i, len;
    const uint8_t              *src;
    unsigned char              *name;
    route_name_limits_t         buf;
    const route_name_limits_t  *limits;

    if (fuzz_match_data == NULL) {
        fuzz_match_data = pcre2_match_data_create(1, NULL);
        if (fuzz_match_data == NULL) {
            abort();
        }

        for (i = 0; i < FUZZ_NFIXED; i++) {
            fuzz_fixed[i].limits = fuzz_fixed_limits[i];
            fuzz_fixed[i].code = fuzz_compile(&fuzz_fixed_limits[i]);
        }
    }

    limits = route_name_fuzz_limits(data, size, &buf, &src, &len);

    /* exactly sized, for AddressSanitizer; malloc(0) may return NULL */

    name = malloc(len ? len : 1);
    if (name == NULL) {
        return 0;
    }

    if (len) {
        memcpy(name, src, len);
    }

    fuzz_compare(name, len, limits, fuzz_cached(limits));

    for (i = 0; i < FUZZ_NFIXED; i++) {
        fuzz_compare(name, len, &fuzz_fixed[i].limits, &fuzz_fixed[i]);
    }

    free(name);

    return 0;
}


static void
fuzz_compare(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, fuzz_regex_t *re)
{
    int          rc, core, regex;
    size_t       i;
    PCRE2_UCHAR  msg[256];

    core = (route_name_check(name, len, limits, NULL) == ROUTE_NAME_OK);

    if (re->code == NULL) {
        regex = 0;

    } else {
        rc = pcre2_match(re->code, name, len, 0, 0, fuzz_match_data, NULL);

        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            pcre2_get_error_message(rc, msg, sizeof(msg));
            fprintf(stderr, "route_name_pcre_fuzz: pcre2_match(): %s\n", msg);
            abort();
        }

        regex = (rc >= 0);
    }

    if (core == regex) {
        return;
    }

    fprintf(stderr, "route_name_pcre_fuzz: limits %zu/%zu/%zu, %zu bytes: "
            "core %s, regex %s\n  \"", limits->max_length,
            limits->max_segments, limits->max_segment_length, len,
            core ? "accepts" : "rejects", regex ? "matches" : "does not");

    for (i = 0; i < len; i++) {
        fprintf(stderr, "\\x%02x", name[i]);
    }

    fprintf(stderr, "\"\n");
    abort();
}


static fuzz_regex_t *
fuzz_cached(const route_name_limits_t *limits)
{
    size_t         slot;
    fuzz_regex_t  *re;

    slot = (limits->max_length * 11 * 81 + limits->max_segments * 81
            + limits->max_segment_length) % FUZZ_CACHE_SIZE;

    re = &fuzz_cache[slot];

    if (re->limits.max_length == limits->max_length
        && re->limits.max_segments == limits->max_segments
        && re->limits.max_segment_length == limits->max_segment_length
        && (re->code != NULL || limits->max_length == 0
            || limits->max_segments == 0
            || limits->max_segment_length == 0))
    {
        return re;
    }

    pcre2_code_free(re->code);

    re->limits = *limits;
    re->code = fuzz_compile(limits);

    return re;
}


/* the regex for the limits, JIT compiled; NULL when a limit is 0 */

static pcre2_code *
fuzz_compile(const route_name_limits_t *limits)
{
    int          rc;
    char         pattern[256];
    size_t       off;
    pcre2_code  *code;
    PCRE2_UCHAR  msg[256];

    if (limits->max_length == 0 || limits->max_segments == 0
        || limits->max_segment_length == 0)
    {
        return NULL;
    }

    snprintf(pattern, sizeof(pattern),
             "^(?=.{1,%zu}+\\z)"
             "[A-Za-z0-9_][A-Za-z0-9_-]{0,%zu}+"
             "(?:/[A-Za-z0-9_][A-Za-z0-9_-]{0,%zu}+){0,%zu}+\\z",
             limits->max_length, limits->max_segment_length - 1,
             limits->max_segment_length - 1, limits->max_segments - 1);

    code = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED,
                         PCRE2_DOTALL, &rc, &off, NULL);

    if (code == NULL) {
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fprintf(stderr, "route_name_pcre_fuzz: pcre2_compile(\"%s\") failed "
                "at %zu: %s\n", pattern, off, msg);
        abort();
    }

    rc = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);

    if (rc != 0) {
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fprintf(stderr, "route_name_pcre_fuzz: pcre2_jit_compile(): %s\n",
                msg);
        abort();
    }

    return code;
}
