
/*
 * libFuzzer target: the sandbox's string.find, match, gmatch and gsub
 * (gateway/sandbox/sandbox_pattern.c) against LuaJIT's own.
 *
 * The input is 4 bytes of header and the strings:
 *
 *   data[0]   bits 0-1: find, match, gmatch, gsub
 *             bit 2:    init, or gsub's max_n
 *             bit 3:    find's plain flag (true, or 1 with bit 7), after
 *                       init or nil
 *             bits 4-6: gsub's replacement: a string, a function that
 *                       returns its first capture, one that returns false,
 *                       a table, one that returns a table for "x" (an
 *                       error), a number, a function that returns the
 *                       number of its arguments, a table with __index
 *             bit 7:    see bit 3
 *   data[1]   init or max_n, a signed byte; -128, 127, 126 and 125 are
 *             NaN, 2^32 + 2, 1.5 and the string " 2 "
 *   data[2]   the subject's length, cut to what there is
 *   data[3]   the replacement string's length, likewise
 *   then      the subject, the replacement, and the pattern: the rest
 *
 * Ours runs first, under a budget of SANDBOX_FUZZ_STEPS instructions;
 * only if it finished within it does LuaJIT's run too, with the same
 * arguments, and the results must be the same, value by value and type
 * by type (gmatch: every iteration), or the same error message.  Any
 * disagreement abort()s, which libFuzzer reports as a crash.
 */


#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

#include "sandbox_budget.h"
#include "sandbox_pattern.h"


#define SANDBOX_FUZZ_STEPS  200000


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *fuzz_state(void);
static int fuzz_push_args(lua_State *L, const uint8_t *data, size_t size,
    int *fn);
static void fuzz_fail(const uint8_t *data, size_t size, const char *ours,
    const char *theirs);
static void fuzz_print(const char *what, const uint8_t *s, size_t len);


/*
 * RUN(F, fn, ...) calls F[fn](...) from a line of Lua, not as a tail call,
 * and returns its results serialized; a gmatch is iterated to the end.
 */
static const char  fuzz_prelude[] =
    "local select, type, tostring, format, concat, unpack, pcall =\n"
    "    select, type, tostring, string.format, table.concat, unpack, pcall\n"
    "local function ser1(v)\n"
    "    local t = type(v)\n"
    "    if t == 'string' then return format('%q', v) end\n"
    "    if t == 'number' then return format('n%.17g', v) end\n"
    "    if t == 'boolean' or t == 'nil' then return tostring(v) end\n"
    "    return t\n"
    "end\n"
    "local function ser(...)\n"
    "    local n = select('#', ...)\n"
    "    local o = { n }\n"
    "    for i = 1, n do o[i + 1] = ser1((select(i, ...))) end\n"
    "    return concat(o, ' ')\n"
    "end\n"
    "local function pack(...) return { n = select('#', ...), ... } end\n"
    "local function call(F, fn, ...)\n"
    "    local r = pack(F[fn](...))\n"
    "    if fn ~= 'gmatch' then return ser(unpack(r, 1, r.n)) end\n"
    "    local it, out = r[1], {}\n"
    "    for i = 1, 2000 do\n"
    "        r = pack(pcall(it))\n"
    "        out[#out + 1] = ser(unpack(r, 1, r.n))\n"
    "        if not r[1] or r.n == 1 then break end\n"
    "    end\n"
    "    return concat(out, '|')\n"
    "end\n"
    "function RUN(...) return ser(pcall(call, ...)) end\n"
    "local function first(c) return c end\n"
    "REPL = {\n"
    "    false,\n"
    "    function(c) return c end,\n"
    "    function() return false end,\n"
    "    { a = 'A', b = false, [''] = '<>', [1] = 'one', ab = 2.5,\n"
    "      x = true },\n"
    "    function(c) if c == 'x' then return {} end return c end,\n"
    "    42,\n"
    "    function(...) return select('#', ...) end,\n"
    "    setmetatable({}, { __index = function(t, k)\n"
    "        return type(k) == 'string' and k:upper() or k end }),\n"
    "}\n";


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       fn, top, n, rc;
    char                     *ours;
    lua_State                *L;
    const char               *theirs;
    sandbox_budget_limits_t   limits;
    sandbox_budget_verdict_e  verdict;

    if (size < 4) {
        return 0;
    }

    L = fuzz_state();
    top = lua_gettop(L);

    /* ours, under the budget */

    lua_getglobal(L, "RUN");
    lua_getglobal(L, "sb");
    n = fuzz_push_args(L, data, size, &fn);

    limits.instructions = SANDBOX_FUZZ_STEPS;
    limits.memory = (int64_t) 1 << 40;
    limits.time_ns = (int64_t) 3600 * 1000000000;
    limits.nesting = 1000;

    if (sandbox_budget_arm(L, &limits) != 0) {
        fprintf(stderr, "sandbox_budget_arm() failed\n");
        abort();
    }

    rc = lua_pcall(L, n + 1, 1, 0);

    /* a budget spent may raise again past RUN()'s pcall: no result */

    verdict = sandbox_budget_disarm(L);

    if (verdict != SANDBOX_BUDGET_OK) {
        lua_settop(L, top);
        return 0;
    }

    if (rc != 0) {
        fprintf(stderr, "RUN() raised: %s\n", lua_tostring(L, -1));
        abort();
    }

    ours = strdup(lua_tostring(L, -1));
    if (ours == NULL) {
        abort();
    }

    lua_settop(L, top);

    /* LuaJIT's, which may take as long as ours did, and no more */

    lua_getglobal(L, "RUN");
    lua_getglobal(L, "string");
    n = fuzz_push_args(L, data, size, &fn);

    if (lua_pcall(L, n + 1, 1, 0) != 0) {
        fprintf(stderr, "RUN() raised: %s\n", lua_tostring(L, -1));
        abort();
    }

    theirs = lua_tostring(L, -1);

    if (strcmp(ours, theirs) != 0) {
        fuzz_fail(data, size, ours, theirs);
    }

    free(ours);
    lua_settop(L, top);

    return 0;
}


/* one state for the whole run, LuaJIT's and ours side by side */

static lua_State *
fuzz_state(void)
{
    static lua_State  *L;

    static const luaL_Reg  sb[] = {
        { "find", sandbox_pattern_find },
        { "match", sandbox_pattern_match },
        { "gmatch", sandbox_pattern_gmatch },
        { "gsub", sandbox_pattern_gsub },
        { NULL, NULL }
    };

    if (L != NULL) {
        return L;
    }

    L = luaL_newstate();
    if (L == NULL) {
        abort();
    }

    luaL_openlibs(L);

    /* the count hook does not run inside JIT-compiled traces */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

    sandbox_budget_init(L);

    luaL_register(L, "sb", sb);
    lua_pop(L, 1);

    if (luaL_loadbuffer(L, fuzz_prelude, sizeof(fuzz_prelude) - 1, "=fuzz")
        != 0
        || lua_pcall(L, 0, 0, 0) != 0)
    {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        abort();
    }

    return L;
}


/* the function's name and its arguments, decoded; how many pushed */

static int
fuzz_push_args(lua_State *L, const uint8_t *data, size_t size, int *fn)
{
    int             flags, n, repl;
    size_t          slen, rlen, plen;
    const uint8_t  *s, *r, *p;

    static const char  *names[] = { "find", "match", "gmatch", "gsub" };

    flags = data[0];
    *fn = flags & 3;

    s = data + 4;
    size -= 4;

    slen = data[2] < size ? data[2] : size;
    r = s + slen;
    size -= slen;

    rlen = data[3] < size ? data[3] : size;
    p = r + rlen;
    plen = size - rlen;

    lua_pushstring(L, names[*fn]);
    lua_pushlstring(L, (const char *) s, slen);
    lua_pushlstring(L, (const char *) p, plen);
    n = 3;

    if (*fn == 3) {
        repl = (flags >> 4) & 7;

        if (repl == 0) {
            lua_pushlstring(L, (const char *) r, rlen);

        } else {
            lua_getglobal(L, "REPL");
            lua_rawgeti(L, -1, repl + 1);
            lua_remove(L, -2);
        }

        n++;
    }

    if (!(flags & 4)) {
        if (*fn == 0 && (flags & 8)) {
            /* find(s, p, nil, plain) */
            lua_pushnil(L);
            goto plain;
        }

        return n;
    }

    switch ((int8_t) data[1]) {
    case -128:
        lua_pushnumber(L, NAN);
        break;
    case 127:
        lua_pushnumber(L, 4294967298.0);
        break;
    case 126:
        lua_pushnumber(L, 1.5);
        break;
    case 125:
        lua_pushliteral(L, " 2 ");
        break;
    default:
        lua_pushinteger(L, (int8_t) data[1]);
        break;
    }

plain:

    n++;

    if (*fn == 0 && (flags & 8)) {
        if (flags & 0x80) {
            lua_pushinteger(L, 1);

        } else {
            lua_pushboolean(L, 1);
        }

        n++;
    }

    return n;
}


static void
fuzz_fail(const uint8_t *data, size_t size, const char *ours,
    const char *theirs)
{
    fprintf(stderr, "sandbox pattern fuzz: ours and LuaJIT's disagree\n");
    fuzz_print("input", data, size);
    fprintf(stderr, "ours:   %s\nLuaJIT: %s\n", ours, theirs);
    abort();
}


static void
fuzz_print(const char *what, const uint8_t *s, size_t len)
{
    size_t  i;

    fprintf(stderr, "%s: \"", what);

    for (i = 0; i < len; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') {
            fputc(s[i], stderr);

        } else {
            fprintf(stderr, "\\x%02x", s[i]);
        }
    }

    fprintf(stderr, "\"\n");
}
