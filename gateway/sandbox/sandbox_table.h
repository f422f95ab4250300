/*
 * table.sort for sandboxed scripts: a heap sort, O(n log n) comparisons
 * whatever the input (LuaJIT's quicksort has inputs that make it
 * quadratic), each one a step of the budget.
 */

#ifndef SANDBOX_TABLE_H
#define SANDBOX_TABLE_H


#include <lua.h>


int sandbox_table_sort(lua_State *L);


#endif /* SANDBOX_TABLE_H */
