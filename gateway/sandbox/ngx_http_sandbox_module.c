/*
 * The C side of gateway.sandbox: a library preloaded into
 * lua-nginx-module's VM as "gateway.sandbox.core".
 *
 *   local core = require "gateway.sandbox.core"
 *   local ok, err, budget = core.run(script, instructions, memory,
 *                                    seconds, nesting)
 *
 * budget: nil, or the one that ran out.
 * and the library functions whose work is counted against the budget
 * while they run: find, match, gmatch, gsub (sandbox_pattern.c), sort
 * (sandbox_table.c); charge(n) for work counted in Lua, reserve(bytes)
 * for memory taken outside the VM's allocator, unrefused(fn, ...) for C
 * code that an allocation failure would leave with a leak.
 *
 * Requiring it wraps the VM's allocator (sandbox_budget.c): do it at
 * worker start (init_worker_by_lua), as the shipped configuration does.
 * The module has no directives.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <lauxlib.h>

#include "ngx_http_lua_api.h"

#include "sandbox_budget.h"
#include "sandbox_pattern.h"
#include "sandbox_table.h"


static ngx_int_t ngx_http_sandbox_preconfiguration(ngx_conf_t *cf);
static int ngx_http_sandbox_open(lua_State *L);


static ngx_http_module_t  ngx_http_sandbox_module_ctx = {
    ngx_http_sandbox_preconfiguration,     /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_sandbox_module = {
    NGX_MODULE_V1,
    &ngx_http_sandbox_module_ctx,          /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_sandbox_preconfiguration(ngx_conf_t *cf)
{
    /* every VM lua-nginx-module makes for this configuration gets it */
    return ngx_http_lua_add_package_preload(cf, "gateway.sandbox.core",
                                            ngx_http_sandbox_open);
}


/* a count as int64_t, at most 2^62: no budget is that large, and the
 * sums of the budget's counters cannot overflow */
static int64_t
ngx_http_sandbox_count(lua_Number n)
{
    return n > 4.6e18 ? (int64_t) 4611686018427387904LL : (int64_t) n;
}


static int64_t
ngx_http_sandbox_limit(lua_State *L, int arg, lua_Number scale)
{
    lua_Number  n;

    n = luaL_checknumber(L, arg) * scale;

    if (!(n >= 0)) {
        luaL_argerror(L, arg, "a budget is not negative");
    }

    return ngx_http_sandbox_count(n);
}


/*
 * ok, err, budget = core.run(fn, instructions, memory, seconds, nesting)
 *
 * Calls fn under the budgets.  Arming, the call and disarming are one C
 * call, so that no instruction outside the script runs while the hook
 * and the allocator's limit are armed.
 */
static int
ngx_http_sandbox_run(lua_State *L)
{
    int                       rc;
    sandbox_budget_limits_t   limits;
    sandbox_budget_verdict_e  v;

    luaL_checktype(L, 1, LUA_TFUNCTION);

    limits.instructions = ngx_http_sandbox_limit(L, 2, 1);
    limits.memory = ngx_http_sandbox_limit(L, 3, 1);
    limits.time_ns = ngx_http_sandbox_limit(L, 4, 1e9);
    limits.nesting = (int) ngx_min(ngx_http_sandbox_limit(L, 5, 1), 1000);

    if (sandbox_budget.armed) {
        return luaL_error(L, "sandbox: a run is armed already");
    }

    lua_settop(L, 1);

    if (sandbox_budget_arm(L, &limits) != 0) {
        return luaL_error(L, "sandbox: the allocator is not wrapped");
    }

    rc = lua_pcall(L, 0, 0, 0);

    v = sandbox_budget_disarm(L);

    if (rc == 0) {
        lua_pushboolean(L, 1);
        lua_pushnil(L);

    } else {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
    }

    if (v != SANDBOX_BUDGET_OK) {
        lua_pushstring(L, sandbox_budget_name(v));

    } else if (rc == LUA_ERRMEM) {
        /* LuaJIT's own limits: "string length overflow" and the like */
        lua_pushliteral(L, "memory");

    } else {
        lua_pushnil(L);
    }

    return 3;
}


/* core.charge(steps): work done in Lua's name, e.g. bytes / 64 */
static int
ngx_http_sandbox_charge(lua_State *L)
{
    lua_Number  n;

    n = luaL_checknumber(L, 1);

    if (n >= 1) {
        sandbox_budget_charge(L, ngx_http_sandbox_count(n));
    }

    return 0;
}


/* core.reserve(bytes): memory C code takes outside the allocator */
static int
ngx_http_sandbox_reserve(lua_State *L)
{
    lua_Number  n;

    n = luaL_checknumber(L, 1);

    if (n >= 1) {
        sandbox_budget_reserve(L, ngx_http_sandbox_count(n));
    }

    return 0;
}


/*
 * core.unrefused(fn, ...): fn(...) with the allocator refusing nothing,
 * then the memory budget checked; fn's results, or its error raised
 * again.  For lua-cjson's decode, which leaks its buffer when an
 * allocation fails inside it; the caller reserves its worst case first.
 */
static int
ngx_http_sandbox_unrefused(lua_State *L)
{
    int  rc;

    luaL_checktype(L, 1, LUA_TFUNCTION);

    sandbox_budget_unrefused(L, 1);
    rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    sandbox_budget_unrefused(L, 0);

    if (rc != 0) {
        return lua_error(L);
    }

    return lua_gettop(L);
}


static int
ngx_http_sandbox_open(lua_State *L)
{
    static const luaL_Reg  lib[] = {
        { "run", ngx_http_sandbox_run },
        { "charge", ngx_http_sandbox_charge },
        { "reserve", ngx_http_sandbox_reserve },
        { "unrefused", ngx_http_sandbox_unrefused },
        { "find", sandbox_pattern_find },
        { "match", sandbox_pattern_match },
        { "gmatch", sandbox_pattern_gmatch },
        { "gsub", sandbox_pattern_gsub },
        { "sort", sandbox_table_sort },
        { NULL, NULL }
    };

    sandbox_budget_init(L);

    lua_createtable(L, 0, sizeof(lib) / sizeof(lib[0]) - 1);
    luaL_register(L, NULL, lib);

    return 1;
}
