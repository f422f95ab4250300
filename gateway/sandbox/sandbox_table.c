/*
 * table.sort for sandboxed scripts (sandbox_table.h).
 *
 * The same contract as LuaJIT's: sorts t[1..#t] in place with "<" or the
 * given order function, not stable.  Elements that compare equal may end
 * up in another order than LuaJIT's quicksort leaves them.  An order
 * function that says an element is less than itself (the usual mistake,
 * "return true" or "<=") raises "invalid order function for sorting",
 * as LuaJIT's quicksort does when it runs off the array; other orders
 * that are not strict give some permutation.
 */

#include <lauxlib.h>

#include "sandbox_budget.h"
#include "sandbox_table.h"


/* t[i] < t[j], with the values at stack slots a and b */
static int
sandbox_sort_less(lua_State *L, int a, int b)
{
    int  less, top;

    sandbox_budget_step(L);

    top = lua_gettop(L);
    a = a < 0 ? top + a + 1 : a;
    b = b < 0 ? top + b + 1 : b;

    if (lua_isnil(L, 2)) {
        return lua_lessthan(L, a, b);
    }

    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);

    sandbox_budget_enter(L);
    lua_call(L, 2, 1);
    sandbox_budget_leave(L);

    less = lua_toboolean(L, -1);
    lua_pop(L, 1);

    return less;
}


/* moves t[i] down the heap t[1..n] */
static void
sandbox_sort_sift(lua_State *L, size_t i, size_t n)
{
    size_t  child;

    for ( ;; ) {
        child = 2 * i;

        if (child > n) {
            return;
        }

        lua_rawgeti(L, 1, (int) child);

        if (child < n) {
            lua_rawgeti(L, 1, (int) child + 1);

            if (sandbox_sort_less(L, -2, -1)) {
                lua_remove(L, -2);
                child++;

            } else {
                lua_pop(L, 1);
            }
        }

        lua_rawgeti(L, 1, (int) i);

        /* stack: ..., t[child], t[i] */
        if (!sandbox_sort_less(L, -1, -2)) {
            lua_pop(L, 2);
            return;
        }

        lua_rawseti(L, 1, (int) child);
        lua_rawseti(L, 1, (int) i);

        i = child;
    }
}


int
sandbox_table_sort(lua_State *L)
{
    size_t  n, i;

    luaL_checktype(L, 1, LUA_TTABLE);

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TFUNCTION);
    }

    lua_settop(L, 2);

    n = lua_objlen(L, 1);

    if (n > 0x7fffffff) {
        return luaL_error(L, "array too big");
    }

    if (n > 1 && !lua_isnil(L, 2)) {
        lua_rawgeti(L, 1, 1);

        if (sandbox_sort_less(L, -1, -1)) {
            return luaL_error(L, "invalid order function for sorting");
        }

        lua_pop(L, 1);
    }

    for (i = n / 2; i >= 1; i--) {
        sandbox_sort_sift(L, i, n);
    }

    while (n > 1) {
        /* the largest goes to the end */
        lua_rawgeti(L, 1, 1);
        lua_rawgeti(L, 1, (int) n);
        lua_rawseti(L, 1, 1);
        lua_rawseti(L, 1, (int) n);

        n--;
        sandbox_sort_sift(L, 1, n);
    }

    return 0;
}
