
/*
 * Route name grammar: the safe-path check shared by the nginx module,
 * route-check, the unit tests, the fuzzers and the benchmarks.
 *
 * It knows nothing of nginx: it takes bytes and limits and returns a
 * verdict.  The bytes are checked as they are; nothing is decoded.
 *
 *   name    = segment *( "/" segment )
 *   segment = first *rest           ; 1 to max_segment_length bytes
 *   first   = ALPHA / DIGIT / "_"
 *   rest    = ALPHA / DIGIT / "_" / "-"
 *
 * with at most max_segments segments and max_length bytes in all.
 */


#ifndef _ROUTE_NAME_H_INCLUDED_
#define _ROUTE_NAME_H_INCLUDED_


#include <stddef.h>


#define ROUTE_NAME_MAX_LENGTH          255
#define ROUTE_NAME_MAX_SEGMENTS        8
#define ROUTE_NAME_MAX_SEGMENT_LENGTH  64

/*
 * What the nginx module and route-check both know of a route's file: the
 * route "a/b" is the script <root>/a/b.lua, and a script whose first byte
 * is ESC is a bytecode dump (LuaJIT's "\033LJ", PUC Lua's "\033Lua").
 */
#define ROUTE_NAME_SUFFIX              ".lua"
#define ROUTE_NAME_SUFFIX_LEN          (sizeof(ROUTE_NAME_SUFFIX) - 1)
#define ROUTE_NAME_BYTECODE_MARK       0x1b


typedef struct {
    size_t  max_length;
    size_t  max_segments;
    size_t  max_segment_length;
} route_name_limits_t;


typedef enum {
    ROUTE_NAME_OK = 0,
    ROUTE_NAME_EMPTY,               /* zero bytes */
    ROUTE_NAME_TOO_LONG,            /* more than max_length bytes */
    ROUTE_NAME_BAD_BYTE,            /* a byte outside [A-Za-z0-9_/-] */
    ROUTE_NAME_EMPTY_SEGMENT,       /* leading, trailing or doubled "/" */
    ROUTE_NAME_LEADING_DASH,        /* a segment starting with "-" */
    ROUTE_NAME_SEGMENT_TOO_LONG,    /* more than max_segment_length bytes */
    ROUTE_NAME_TOO_MANY_SEGMENTS    /* more than max_segments segments */
} route_name_rc_e;

#define ROUTE_NAME_NREASONS  (ROUTE_NAME_TOO_MANY_SEGMENTS + 1)


extern const route_name_limits_t  route_name_default_limits;


/*
 * Returns ROUTE_NAME_OK or the first violation found scanning left to
 * right (length first).  When "offset" is not NULL it receives the byte
 * offset where the violation was found.
 */
route_name_rc_e route_name_check(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset);

/* A short lowercase word for the verdict: "ok", "bad byte", ... */
const char *route_name_reason(route_name_rc_e rc);


#endif /* _ROUTE_NAME_H_INCLUDED_ */
