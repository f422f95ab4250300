
/*
 * Lua 5.1 patterns as LuaJIT 2.1 has them, counted step by step against
 * the sandbox budget; see sandbox_pattern.h.
 *
 * The matcher is a backtracking walk over the pattern, recursive where
 * LuaJIT's is and nowhere else, so that its nesting counter reaches
 * SANDBOX_PATTERN_MAXDEPTH ("pattern too complex") on exactly the inputs
 * where LuaJIT's does, and malformed patterns are found as lazily: an
 * error is raised only when the walk reaches the bad item.
 *
 * A step is one pattern item dispatched (which includes every call of
 * the walk), one iteration of the * + - expansion loops, forwards or
 * back, one byte scanned by %b, one start position tried or skipped,
 * one escape of a replacement string.  A set of 32 bytes or more costs
 * one more step per 16 of its bytes each time it is read; memchr() over
 * start positions, a back reference, a replacement string and a plain
 * search cost one per 16 bytes they scan, compare or copy.  So the
 * work between two steps is bounded by a constant, and a budget that
 * runs out stops the walk, whatever the pattern.
 *
 * Two shortcuts, neither of which changes a result or an error: start
 * positions where the pattern's first item cannot match are skipped
 * (memchr() for a plain byte), and the expansion loops try the rest of
 * the pattern only where the byte it must start with is.
 *
 * A budget that runs out, like every error here, longjmps out of the
 * walk: nothing is allocated but on the Lua stack and in luaL_Buffer.
 */


/* memmem() */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <lua.h>
#include <lauxlib.h>

#include "sandbox_budget.h"
#include "sandbox_pattern.h"


#define SANDBOX_PATTERN_MAXCAPTURES  LUA_MAXCAPTURES    /* 32 */
#define SANDBOX_PATTERN_MAXDEPTH     200                /* LJ_MAX_XLEVEL */

/* the len of a capture not closed yet, and of a () position capture */
#define SANDBOX_PATTERN_UNFINISHED   (-1)
#define SANDBOX_PATTERN_POSITION     (-2)

#define SANDBOX_PATTERN_ESC          '%'

#define sandbox_pattern_digit(c)     ((unsigned) (c) - '0' < 10)

/*
 * n steps at once, as n sandbox_budget_step()s would take them: inline,
 * for the small charges of the walk (a long set, a back reference), where
 * sandbox_budget_charge() would read the clock each time.
 */
#define sandbox_pattern_charge(L, n)                                       \
    do {                                                                   \
        sandbox_budget.ticks -= (int64_t) (n);                             \
        if (sandbox_budget.ticks < 0) {                                    \
            sandbox_budget_check(L);                                       \
        }                                                                  \
    } while (0)


/*
 * The classes of the bytes, in ASCII and no locale, as LuaJIT's lj_char
 * has them; Z is the NUL, for %z.
 */

#define C  0x01     /* %c */
#define S  0x02     /* %s */
#define P  0x04     /* %p */
#define D  0x08     /* %d */
#define X  0x10     /* %x */
#define U  0x20     /* %u */
#define L  0x40     /* %l */
#define Z  0x80     /* %z */

static const u_char  sandbox_pattern_ctype[256] = {
    Z|C, C, C, C, C, C, C, C,                                        /* 00 */
    C, C|S, C|S, C|S, C|S, C|S, C, C,                                /* 08 */
    C, C, C, C, C, C, C, C,                                          /* 10 */
    C, C, C, C, C, C, C, C,                                          /* 18 */
    S, P, P, P, P, P, P, P,                                          /* 20 */
    P, P, P, P, P, P, P, P,                                          /* 28 */
    D|X, D|X, D|X, D|X, D|X, D|X, D|X, D|X,                          /* 30 */
    D|X, D|X, P, P, P, P, P, P,                                      /* 38 */
    P, X|U, X|U, X|U, X|U, X|U, X|U, U,                              /* 40 */
    U, U, U, U, U, U, U, U,                                          /* 48 */
    U, U, U, U, U, U, U, U,                                          /* 50 */
    U, U, U, P, P, P, P, P,                                          /* 58 */
    P, X|L, X|L, X|L, X|L, X|L, X|L, L,                              /* 60 */
    L, L, L, L, L, L, L, L,                                          /* 68 */
    L, L, L, L, L, L, L, L,                                          /* 70 */
    L, L, L, P, P, P, P, C,                                          /* 78 */
    /* 80-ff: none */
};

/* the bytes of each class letter, in either case */

static const u_char  sandbox_pattern_classes[256] = {
    ['a'] = U|L,        ['A'] = U|L,
    ['c'] = C,          ['C'] = C,
    ['d'] = D,          ['D'] = D,
    ['g'] = P|D|U|L,    ['G'] = P|D|U|L,
    ['l'] = L,          ['L'] = L,
    ['p'] = P,          ['P'] = P,
    ['s'] = S,          ['S'] = S,
    ['u'] = U,          ['U'] = U,
    ['w'] = D|U|L,      ['W'] = D|U|L,
    ['x'] = X,          ['X'] = X,
    ['z'] = Z,          ['Z'] = Z
};

#undef C
#undef S
#undef P
#undef D
#undef X
#undef U
#undef L
#undef Z


typedef struct {
    const u_char               *start;
    ptrdiff_t                   len;
} sandbox_pattern_capture_t;


typedef struct {
    lua_State                  *L;
    const u_char               *src;        /* the subject */
    const u_char               *end;        /* its end, a NUL */
    int                         level;      /* captures opened */
    int                         depth;      /* walks nested */
    const u_char               *first;      /* every match starts with it */
    const u_char               *first_end;
    sandbox_pattern_capture_t   capture[SANDBOX_PATTERN_MAXCAPTURES];
} sandbox_pattern_state_t;


static int sandbox_pattern_find_aux(lua_State *L, int find);
static int sandbox_pattern_gmatch_next(lua_State *L);
static void sandbox_pattern_add_value(sandbox_pattern_state_t *st,
    luaL_Buffer *b, const u_char *s, const u_char *e, int tr);
static void sandbox_pattern_add_string(sandbox_pattern_state_t *st,
    luaL_Buffer *b, const u_char *s, const u_char *e);
static void sandbox_pattern_first(sandbox_pattern_state_t *st,
    const u_char *p);
static const u_char *sandbox_pattern_skip(sandbox_pattern_state_t *st,
    const u_char *q);
static int sandbox_pattern_push_captures(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *e);
static void sandbox_pattern_push_capture(sandbox_pattern_state_t *st,
    int i, const u_char *s, const u_char *e);

static const u_char *sandbox_pattern_walk(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p);
static const u_char *sandbox_pattern_greedy(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p, const u_char *ep);
static const u_char *sandbox_pattern_lazy(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p, const u_char *ep);
static int sandbox_pattern_next_byte(sandbox_pattern_state_t *st,
    const u_char *p);
static const u_char *sandbox_pattern_open(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p, ptrdiff_t what);
static const u_char *sandbox_pattern_close(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p);
static const u_char *sandbox_pattern_balance(sandbox_pattern_state_t *st,
    const u_char *s, const u_char *p);
static const u_char *sandbox_pattern_backref(sandbox_pattern_state_t *st,
    const u_char *s, int l);
static const u_char *sandbox_pattern_class_end(sandbox_pattern_state_t *st,
    const u_char *p);
static inline int sandbox_pattern_single(int c, const u_char *p,
    const u_char *ep);
static inline int sandbox_pattern_set(int c, const u_char *p,
    const u_char *ec);
static inline int sandbox_pattern_class(int c, int cl);

static int32_t sandbox_pattern_optint(lua_State *L, int narg, int32_t def);
static int sandbox_pattern_has_specials(const u_char *p, size_t len);
static void sandbox_pattern_error(lua_State *L, const char *msg);


int
sandbox_pattern_find(lua_State *L)
{
    return sandbox_pattern_find_aux(L, 1);
}


int
sandbox_pattern_match(lua_State *L)
{
    return sandbox_pattern_find_aux(L, 0);
}


int
sandbox_pattern_gmatch(lua_State *L)
{
    luaL_checklstring(L, 1, NULL);
    luaL_checklstring(L, 2, NULL);

    /* subject, pattern and the offset to go on from, as LuaJIT keeps them */

    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, sandbox_pattern_gmatch_next, 3);

    return 1;
}


int
sandbox_pattern_gsub(lua_State *L)
{
    int                       tr, max, n, anchor;
    size_t                    len;
    luaL_Buffer               b;
    const u_char             *s, *p, *e, *copied;
    sandbox_pattern_state_t   st;

    s = (const u_char *) luaL_checklstring(L, 1, &len);
    p = (const u_char *) luaL_checklstring(L, 2, NULL);
    tr = lua_type(L, 3);
    max = luaL_optint(L, 4, (int) (len + 1));

    anchor = (*p == '^');
    if (anchor) {
        p++;
    }

    if (tr != LUA_TNUMBER && tr != LUA_TSTRING && tr != LUA_TFUNCTION
        && tr != LUA_TTABLE)
    {
        luaL_argerror(L, 3, "string/function/table expected");
    }

    luaL_buffinit(L, &b);

    st.L = L;
    st.src = s;
    st.end = s + len;

    sandbox_pattern_first(&st, anchor ? NULL : p);

    /* the bytes from copied to s are kept as they are, added in one go */

    copied = s;
    n = 0;

    while (n < max) {

        if (st.first != NULL) {
            s = sandbox_pattern_skip(&st, s);
            if (s == st.end) {
                break;
            }
        }

        sandbox_budget_step(L);

        st.level = 0;
        st.depth = 0;

        e = sandbox_pattern_walk(&st, s, p);

        if (e != NULL) {
            n++;
            luaL_addlstring(&b, (const char *) copied, s - copied);
            sandbox_pattern_add_value(&st, &b, s, e, tr);
            copied = e;
        }

        if (e != NULL && e > s) {
            s = e;

        } else if (s < st.end) {
            s++;

        } else {
            break;
        }

        if (anchor) {
            break;
        }
    }

    luaL_addlstring(&b, (const char *) copied, st.end - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, n);

    return 2;
}


static int
sandbox_pattern_find_aux(lua_State *L, int find)
{
    int                       anchor;
    size_t                    len, plen;
    int32_t                   init;
    const u_char             *s, *p, *q, *e;
    sandbox_pattern_state_t   st;

    s = (const u_char *) luaL_checklstring(L, 1, &len);
    p = (const u_char *) luaL_checklstring(L, 2, &plen);
    init = sandbox_pattern_optint(L, 3, 1);

    /* 1-based, negative from the end; LuaJIT clamps it into [0, len] */

    if (init < 0) {
        init += (int32_t) len;

    } else {
        init--;
    }

    if (init < 0) {
        init = 0;
    }

    if ((size_t) init > len) {
        init = (int32_t) len;
    }

    if (find
        && (lua_toboolean(L, 4) || !sandbox_pattern_has_specials(p, plen)))
    {
        /* a plain search, all of both strings, NULs and all: linear */

        sandbox_budget_charge(L, (int64_t) ((len - init + plen) / 16 + 1));

        if (plen == 0) {
            q = s + init;

        } else if (plen <= len - init) {
            q = memmem(s + init, len - init, p, plen);

        } else {
            q = NULL;
        }

        if (q != NULL) {
            lua_pushinteger(L, q - s + 1);
            lua_pushinteger(L, q - s + plen);
            return 2;
        }

        lua_pushnil(L);
        return 1;
    }

    /* the pattern ends at its first NUL, as LuaJIT reads it */

    anchor = (*p == '^');
    if (anchor) {
        p++;
    }

    st.L = L;
    st.src = s;
    st.end = s + len;

    sandbox_pattern_first(&st, anchor ? NULL : p);

    q = s + init;

    for ( ;; ) {

        if (st.first != NULL) {
            q = sandbox_pattern_skip(&st, q);
            if (q == st.end) {
                break;
            }
        }

        sandbox_budget_step(L);

        st.level = 0;
        st.depth = 0;

        e = sandbox_pattern_walk(&st, q, p);

        if (e != NULL) {
            if (find) {
                lua_pushinteger(L, q - s + 1);
                lua_pushinteger(L, e - s);
                return sandbox_pattern_push_captures(&st, NULL, NULL) + 2;
            }

            return sandbox_pattern_push_captures(&st, q, e);
        }

        if (q == st.end || anchor) {
            break;
        }

        q++;
    }

    lua_pushnil(L);

    return 1;
}


static int
sandbox_pattern_gmatch_next(lua_State *L)
{
    size_t                    len;
    lua_Integer               pos;
    const u_char             *s, *p, *q, *e;
    sandbox_pattern_state_t   st;

    s = (const u_char *) lua_tolstring(L, lua_upvalueindex(1), &len);
    p = (const u_char *) lua_tolstring(L, lua_upvalueindex(2), NULL);
    pos = lua_tointeger(L, lua_upvalueindex(3));

    /* no anchor: a "^" in gmatch is a byte like any other, as in LuaJIT */

    st.L = L;
    st.src = s;
    st.end = s + len;

    sandbox_pattern_first(&st, p);

    for (q = s + pos; q <= st.end; q++) {

        if (st.first != NULL) {
            q = sandbox_pattern_skip(&st, q);
            if (q == st.end) {
                break;
            }
        }

        sandbox_budget_step(L);

        st.level = 0;
        st.depth = 0;

        e = sandbox_pattern_walk(&st, q, p);

        if (e != NULL) {
            /* past an empty match, on by one byte */
            pos = (e - s) + (e == q);

            lua_pushinteger(L, pos);
            lua_replace(L, lua_upvalueindex(3));

            return sandbox_pattern_push_captures(&st, q, e);
        }
    }

    return 0;
}


/*
 * The first item of the pattern p (NULL: anchored), when every match must
 * start with a byte that it matches: a byte, %class or [set], alone or
 * with "+", after at most a few "(".  The start positions where that
 * item fails can be skipped: the walk would fail there at that item,
 * before anything that can raise.  Never raises itself: a malformed item
 * is no filter.
 */

static void
sandbox_pattern_first(sandbox_pattern_state_t *st, const u_char *p)
{
    int            n;
    const u_char  *q;

    st->first = NULL;

    if (p == NULL) {
        return;
    }

    for (n = 0; *p == '(' && n < 8; n++) {
        p += (p[1] == ')') ? 2 : 1;
    }

    switch (*p) {

    case '\0':
    case '(':
    case ')':
    case '.':
        return;

    case '$':
        if (p[1] == '\0') {
            return;
        }

        q = p + 1;
        break;

    case SANDBOX_PATTERN_ESC:
        if (p[1] == '\0' || p[1] == 'b' || p[1] == 'f'
            || sandbox_pattern_digit(p[1]))
        {
            return;
        }

        q = p + 2;
        break;

    case '[':
        q = p + 1;

        if (*q == '^') {
            q++;
        }

        do {
            if (*q == '\0') {
                return;
            }

            if (*q++ == SANDBOX_PATTERN_ESC && *q != '\0') {
                q++;
            }

        } while (*q != ']');

        q++;
        break;

    default:
        q = p + 1;
        break;
    }

    if (*q == '*' || *q == '?' || *q == '-') {
        return;
    }

    st->first = p;
    st->first_end = q;
}


/* from q to the next start position that the first item allows, or end */

static const u_char *
sandbox_pattern_skip(sandbox_pattern_state_t *st, const u_char *q)
{
    int64_t        extra;
    const u_char  *p, *ep, *r;

    p = st->first;
    ep = st->first_end;

    if (*p != SANDBOX_PATTERN_ESC && *p != '[') {
        r = memchr(q, *p, st->end - q);
        if (r == NULL) {
            r = st->end;
        }

        sandbox_pattern_charge(st->L, (r - q) / 16);

        return r;
    }

    extra = (ep - p >= 32) ? (ep - p) / 16 : 0;

    while (q < st->end && !sandbox_pattern_single(*q, p, ep)) {
        sandbox_budget_step(st->L);

        if (extra) {
            sandbox_pattern_charge(st->L, extra);
        }

        q++;
    }

    return q;
}


/* the replacement of the match s..e, the third argument of type tr */

static void
sandbox_pattern_add_value(sandbox_pattern_state_t *st, luaL_Buffer *b,
    const u_char *s, const u_char *e, int tr)
{
    int         n;
    lua_State  *L;

    L = st->L;

    switch (tr) {

    case LUA_TFUNCTION:
        lua_pushvalue(L, 3);
        n = sandbox_pattern_push_captures(st, s, e);

        sandbox_budget_enter(L);
        lua_call(L, n, 1);
        sandbox_budget_leave(L);
        break;

    case LUA_TTABLE:
        sandbox_pattern_push_capture(st, 0, s, e);

        /* an __index metamethod is a call into the script too */
        sandbox_budget_enter(L);
        lua_gettable(L, 3);
        sandbox_budget_leave(L);
        break;

    default:
        sandbox_pattern_add_string(st, b, s, e);
        return;
    }

    if (!lua_toboolean(L, -1)) {
        /* nil or false: the match stays */
        lua_pop(L, 1);
        luaL_addlstring(b, (const char *) s, e - s);
        return;
    }

    if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)",
                   luaL_typename(L, -1));
    }

    luaL_addvalue(b);
}


/*
 * A replacement string: %0 is the match, %1-%9 its captures, "%" and any
 * other byte is that byte; a "%" at the very end is LuaJIT's reading of
 * the string's terminating NUL, so a NUL.
 */

static void
sandbox_pattern_add_string(sandbox_pattern_state_t *st, luaL_Buffer *b,
    const u_char *s, const u_char *e)
{
    int                         i;
    size_t                      len;
    const u_char               *r, *end, *esc;
    sandbox_pattern_capture_t  *cap;

    r = (const u_char *) lua_tolstring(st->L, 3, &len);
    end = r + len;

    if (len >= 16) {
        sandbox_pattern_charge(st->L, (int64_t) (len / 16));
    }

    while (r < end) {

        esc = memchr(r, SANDBOX_PATTERN_ESC, end - r);
        if (esc == NULL) {
            luaL_addlstring(b, (const char *) r, end - r);
            return;
        }

        luaL_addlstring(b, (const char *) r, esc - r);

        r = esc + 1;

        /* an escape is a step, and so is every 16 bytes it copies */
        sandbox_budget_step(st->L);

        if (!sandbox_pattern_digit(*r)) {
            luaL_addchar(b, (char) *r);
            r++;
            continue;
        }

        i = *r++ - '1';

        if (i < 0) {
            sandbox_pattern_charge(st->L, (e - s) / 16);
            luaL_addlstring(b, (const char *) s, e - s);
            continue;
        }

        /* a string capture goes in directly, anything else as LuaJIT does */

        cap = &st->capture[i];

        if (i < st->level && cap->len >= 0) {
            sandbox_pattern_charge(st->L, cap->len / 16);
            luaL_addlstring(b, (const char *) cap->start, cap->len);
            continue;
        }

        sandbox_pattern_push_capture(st, i, s, e);
        luaL_addvalue(b);
    }
}


static int
sandbox_pattern_push_captures(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *e)
{
    int  i, n;

    n = (st->level == 0 && s != NULL) ? 1 : st->level;

    luaL_checkstack(st->L, n, "too many captures");

    for (i = 0; i < n; i++) {
        sandbox_pattern_push_capture(st, i, s, e);
    }

    return n;
}


static void
sandbox_pattern_push_capture(sandbox_pattern_state_t *st, int i,
    const u_char *s, const u_char *e)
{
    ptrdiff_t  len;

    if (i >= st->level) {
        if (i != 0) {
            sandbox_pattern_error(st->L, "invalid capture index");
        }

        /* no captures: the whole match */
        lua_pushlstring(st->L, (const char *) s, e - s);
        return;
    }

    len = st->capture[i].len;

    if (len == SANDBOX_PATTERN_UNFINISHED) {
        sandbox_pattern_error(st->L, "unfinished capture");
    }

    if (len == SANDBOX_PATTERN_POSITION) {
        lua_pushinteger(st->L, st->capture[i].start - st->src + 1);
        return;
    }

    lua_pushlstring(st->L, (const char *) st->capture[i].start, len);
}


/*
 * Matches the pattern p at s: the end of the match, or NULL.  Nested once
 * per call, as LuaJIT's match() is; an item that needs no backtracking
 * goes on in the same call.
 */

static const u_char *
sandbox_pattern_walk(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p)
{
    int            m, prev;
    const u_char  *ep, *r;

    if (++st->depth > SANDBOX_PATTERN_MAXDEPTH) {
        sandbox_pattern_error(st->L, "pattern too complex");
    }

next:

    sandbox_budget_step(st->L);

    switch (*p) {

    case '\0':
        break;

    case '(':
        if (p[1] == ')') {
            s = sandbox_pattern_open(st, s, p + 2, SANDBOX_PATTERN_POSITION);

        } else {
            s = sandbox_pattern_open(st, s, p + 1,
                                     SANDBOX_PATTERN_UNFINISHED);
        }

        break;

    case ')':
        s = sandbox_pattern_close(st, s, p + 1);
        break;

    case '$':
        if (p[1] != '\0') {
            goto item;
        }

        if (s != st->end) {
            s = NULL;
        }

        break;

    case SANDBOX_PATTERN_ESC:

        if (p[1] == 'b') {
            s = sandbox_pattern_balance(st, s, p + 2);
            if (s == NULL) {
                break;
            }

            p += 4;
            goto next;
        }

        if (p[1] == 'f') {
            p += 2;

            if (*p != '[') {
                sandbox_pattern_error(st->L,
                                      "missing '[' after '%f' in pattern");
            }

            ep = sandbox_pattern_class_end(st, p);

            if (ep - p >= 32) {
                sandbox_pattern_charge(st->L, (ep - p) / 16);
            }

            /* the subject is NUL-terminated: its end is a NUL here */

            prev = (s == st->src) ? '\0' : s[-1];

            if (sandbox_pattern_set(prev, p, ep - 1)
                || !sandbox_pattern_set(*s, p, ep - 1))
            {
                s = NULL;
                break;
            }

            p = ep;
            goto next;
        }

        if (sandbox_pattern_digit(p[1])) {
            s = sandbox_pattern_backref(st, s, p[1]);
            if (s == NULL) {
                break;
            }

            p += 2;
            goto next;
        }

        goto item;

    default:
    item:

        ep = sandbox_pattern_class_end(st, p);

        if (ep - p >= 32) {
            sandbox_pattern_charge(st->L, (ep - p) / 16);
        }

        m = s < st->end && sandbox_pattern_single(*s, p, ep);

        switch (*ep) {

        case '?':
            if (m) {
                r = sandbox_pattern_walk(st, s + 1, ep + 1);
                if (r != NULL) {
                    s = r;
                    break;
                }
            }

            p = ep + 1;
            goto next;

        case '*':
            s = sandbox_pattern_greedy(st, s, p, ep);
            break;

        case '+':
            s = m ? sandbox_pattern_greedy(st, s + 1, p, ep) : NULL;
            break;

        case '-':
            s = sandbox_pattern_lazy(st, s, p, ep);
            break;

        default:
            if (m) {
                s++;
                p = ep;
                goto next;
            }

            s = NULL;
            break;
        }

        break;
    }

    st->depth--;

    return s;
}


/* item* from s: as many as match, then one fewer at a time */

static const u_char *
sandbox_pattern_greedy(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p, const u_char *ep)
{
    int            c;
    int64_t        extra;
    ptrdiff_t      i;
    const u_char  *r;

    extra = (ep - p >= 32) ? (ep - p) / 16 : 0;

    i = 0;

    while (s + i < st->end && sandbox_pattern_single(s[i], p, ep)) {
        sandbox_budget_step(st->L);

        if (extra) {
            sandbox_pattern_charge(st->L, extra);
        }

        i++;
    }

    c = sandbox_pattern_next_byte(st, ep + 1);

    for ( ;; ) {

        if (c < 0 || (s + i < st->end && s[i] == c)) {
            r = sandbox_pattern_walk(st, s + i, ep + 1);
            if (r != NULL) {
                return r;
            }

        } else {
            sandbox_budget_step(st->L);
        }

        if (i == 0) {
            return NULL;
        }

        i--;
    }
}


/* item- from s: as few as the rest of the pattern allows */

static const u_char *
sandbox_pattern_lazy(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p, const u_char *ep)
{
    int            c;
    int64_t        extra;
    const u_char  *r;

    extra = (ep - p >= 32) ? (ep - p) / 16 : 0;

    c = sandbox_pattern_next_byte(st, ep + 1);

    for ( ;; ) {

        if (c < 0 || (s < st->end && *s == c)) {
            r = sandbox_pattern_walk(st, s, ep + 1);
            if (r != NULL) {
                return r;
            }
        }

        if (s >= st->end || !sandbox_pattern_single(*s, p, ep)) {
            return NULL;
        }

        sandbox_budget_step(st->L);

        if (extra) {
            sandbox_pattern_charge(st->L, extra);
        }

        s++;
    }
}


/*
 * The byte that the rest p of the pattern must start with, after the
 * ")"s that close captures open now, or -1.  Where it is not there, the
 * walk of p would fail at that byte before anything that can raise: no
 * ")" without a capture to close, no nesting past the limit.
 */

static int
sandbox_pattern_next_byte(sandbox_pattern_state_t *st, const u_char *p)
{
    int            i, open, closes;
    const u_char  *q;

    for (q = p; *q == ')'; q++) { /* void */ }

    switch (*q) {
    case '\0': case '(': case SANDBOX_PATTERN_ESC: case '[': case '.':
    case '$':
        return -1;
    }

    if (q[1] == '*' || q[1] == '?' || q[1] == '-') {
        return -1;
    }

    closes = q - p;

    if (st->depth + closes + 1 > SANDBOX_PATTERN_MAXDEPTH) {
        return -1;
    }

    if (closes > 0) {
        open = 0;

        for (i = 0; i < st->level; i++) {
            if (st->capture[i].len == SANDBOX_PATTERN_UNFINISHED) {
                open++;
            }
        }

        if (closes > open) {
            return -1;
        }
    }

    return *q;
}


static const u_char *
sandbox_pattern_open(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p, ptrdiff_t what)
{
    int            l;
    const u_char  *r;

    l = st->level;

    if (l >= SANDBOX_PATTERN_MAXCAPTURES) {
        sandbox_pattern_error(st->L, "too many captures");
    }

    st->capture[l].start = s;
    st->capture[l].len = what;
    st->level = l + 1;

    r = sandbox_pattern_walk(st, s, p);
    if (r == NULL) {
        st->level--;
    }

    return r;
}


/* ")": closes the innermost capture still open */

static const u_char *
sandbox_pattern_close(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p)
{
    int            l;
    const u_char  *r;

    for (l = st->level - 1; l >= 0; l--) {
        if (st->capture[l].len == SANDBOX_PATTERN_UNFINISHED) {
            break;
        }
    }

    if (l < 0) {
        sandbox_pattern_error(st->L, "invalid pattern capture");
    }

    st->capture[l].len = s - st->capture[l].start;

    r = sandbox_pattern_walk(st, s, p);
    if (r == NULL) {
        st->capture[l].len = SANDBOX_PATTERN_UNFINISHED;
    }

    return r;
}


/* %bxy at s, p pointing at x */

static const u_char *
sandbox_pattern_balance(sandbox_pattern_state_t *st, const u_char *s,
    const u_char *p)
{
    int     open, close;
    size_t  n;

    if (p[0] == '\0' || p[1] == '\0') {
        sandbox_pattern_error(st->L, "unbalanced pattern");
    }

    /* at the end, *s is the subject's NUL, which p[0] is not */

    if (*s != p[0]) {
        return NULL;
    }

    open = p[0];
    close = p[1];
    n = 1;

    while (++s < st->end) {
        sandbox_budget_step(st->L);

        if (*s == close) {
            if (--n == 0) {
                return s + 1;
            }

        } else if (*s == open) {
            n++;
        }
    }

    return NULL;
}


/* %1-%9 (l is the digit): the text of that capture again */

static const u_char *
sandbox_pattern_backref(sandbox_pattern_state_t *st, const u_char *s, int l)
{
    size_t  len;

    l -= '1';

    if (l < 0 || l >= st->level
        || st->capture[l].len == SANDBOX_PATTERN_UNFINISHED)
    {
        sandbox_pattern_error(st->L, "invalid capture index");
    }

    /* a position capture, as (size_t) -2, is longer than any rest */

    len = (size_t) st->capture[l].len;

    if ((size_t) (st->end - s) < len) {
        return NULL;
    }

    sandbox_pattern_charge(st->L, (int64_t) (len / 16 + 1));

    if (memcmp(st->capture[l].start, s, len) != 0) {
        return NULL;
    }

    return s + len;
}


/* past the single-byte item at p: a byte, %x or a [set] */

static const u_char *
sandbox_pattern_class_end(sandbox_pattern_state_t *st, const u_char *p)
{
    switch (*p++) {

    case SANDBOX_PATTERN_ESC:
        if (*p == '\0') {
            sandbox_pattern_error(st->L, "malformed pattern (ends with '%')");
        }

        return p + 1;

    case '[':
        if (*p == '^') {
            p++;
        }

        /* the first byte is in the set even if it is "]" */

        do {
            if (*p == '\0') {
                sandbox_pattern_error(st->L,
                                      "malformed pattern (missing ']')");
            }

            if (*p++ == SANDBOX_PATTERN_ESC && *p != '\0') {
                p++;
            }

        } while (*p != ']');

        return p + 1;

    default:
        return p;
    }
}


static inline int
sandbox_pattern_single(int c, const u_char *p, const u_char *ep)
{
    switch (*p) {

    case '.':
        return 1;

    case SANDBOX_PATTERN_ESC:
        return sandbox_pattern_class(c, p[1]);

    case '[':
        return sandbox_pattern_set(c, p, ep - 1);

    default:
        return *p == c;
    }
}


/* c in the set from p, its "[", to ec, its "]" */

static inline int
sandbox_pattern_set(int c, const u_char *p, const u_char *ec)
{
    int  in;

    in = 1;

    if (p[1] == '^') {
        in = 0;
        p++;
    }

    while (++p < ec) {

        if (*p == SANDBOX_PATTERN_ESC) {
            p++;

            if (sandbox_pattern_class(c, *p)) {
                return in;
            }

        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;

            if (p[-2] <= c && c <= *p) {
                return in;
            }

        } else if (*p == c) {
            return in;
        }
    }

    return !in;
}


/* %cl: a class, or else the byte cl itself; upper case complements */

static inline int
sandbox_pattern_class(int c, int cl)
{
    int  m, r;

    m = sandbox_pattern_classes[cl];

    if (m == 0) {
        return cl == c;
    }

    r = (sandbox_pattern_ctype[c] & m) != 0;

    return (cl & 0x20) ? r : !r;
}


/* lj_lib_optint(): a number or a numeric string, cut to int32_t */

static int32_t
sandbox_pattern_optint(lua_State *L, int narg, int32_t def)
{
    lua_Number  n;

    if (lua_isnoneornil(L, narg)) {
        return def;
    }

    n = luaL_checknumber(L, narg);

    /* lj_num2int() on x86-64, cvttsd2si: INT32_MIN for NaN and overflow */

    if (n >= -2147483648.0 && n < 2147483648.0) {
        return (int32_t) n;
    }

    return INT32_MIN;
}


/* lj_str_haspattern(): any of ^$*+?.([%- anywhere, even past a NUL */

static int
sandbox_pattern_has_specials(const u_char *p, size_t len)
{
    const u_char  *end;

    for (end = p + len; p < end; p++) {

        switch (*p) {
        case '^': case '$': case '*': case '+': case '?':
        case '.': case '(': case '[': case '%': case '-':
            return 1;
        }
    }

    return 0;
}


/* in the caller's context, as LuaJIT's lj_err_caller(): luaL_error() */

static void
sandbox_pattern_error(lua_State *L, const char *msg)
{
    luaL_error(L, "%s", msg);
}
