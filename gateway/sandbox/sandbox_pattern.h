/*
 * string.find, string.match, string.gmatch and string.gsub for sandboxed
 * scripts: LuaJIT 2.1's Lua 5.1 patterns, written again so that every
 * step of the matcher is counted against the run's budget
 * (sandbox_budget.h).  LuaJIT's own backtracking matcher can spend hours
 * inside one C call, where no count hook can stop it.
 *
 * The results, errors and error messages are those of LuaJIT 2.1's
 * string library on every input that finishes; the unit test and the
 * fuzz target compare the two.
 *
 * No nginx types here: plain lua_CFunctions, for any lua_State whose VM
 * has sandbox_budget_init()'ed.
 */

#ifndef SANDBOX_PATTERN_H
#define SANDBOX_PATTERN_H


#include <lua.h>


int sandbox_pattern_find(lua_State *L);
int sandbox_pattern_match(lua_State *L);
int sandbox_pattern_gmatch(lua_State *L);
int sandbox_pattern_gsub(lua_State *L);


#endif /* SANDBOX_PATTERN_H */
