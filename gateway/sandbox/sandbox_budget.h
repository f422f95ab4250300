/*
 * The budgets of one sandboxed run: instructions, memory, time and the
 * nesting of callbacks from C into the script.
 *
 * One run at a time per process (a sandboxed script never yields), so
 * the state is one global.  The budgets are enforced where the work is
 * done: a count hook every SANDBOX_HOOK_EVERY VM instructions, the C
 * library's own loops through sandbox_budget_step(), the allocator for
 * memory.  A budget that runs out raises a Lua error at that point and
 * records which one; sandbox_budget_disarm() tells.
 *
 * No nginx types here: the unit tests and the fuzz targets link this
 * file against a plain LuaJIT.
 */

#ifndef SANDBOX_BUDGET_H
#define SANDBOX_BUDGET_H


#include <stdint.h>
#include <lua.h>


typedef enum {
    SANDBOX_BUDGET_OK = 0,
    SANDBOX_BUDGET_INSTRUCTION,
    SANDBOX_BUDGET_MEMORY,
    SANDBOX_BUDGET_TIME,
    SANDBOX_BUDGET_NESTING
} sandbox_budget_verdict_e;


typedef struct {
    int64_t     instructions;   /* VM instructions + C library steps */
    int64_t     memory;         /* bytes of heap growth */
    int64_t     time_ns;        /* wall clock */
    int         nesting;        /* active callbacks from C */
} sandbox_budget_limits_t;


typedef struct {
    /* steps the C library may take before sandbox_budget_check() */
    int64_t     ticks;
    int         armed;
} sandbox_budget_t;


extern sandbox_budget_t  sandbox_budget;


/* Installs the allocator wrapper in L's VM; once per VM. */
int sandbox_budget_init(lua_State *L);

/* Starts a run: from now on L's VM spends against the limits.  -1 when
 * sandbox_budget_init() did not run for this VM. */
int sandbox_budget_arm(lua_State *L, const sandbox_budget_limits_t *limits);

/* Ends a run; which budget ran out, if any.  Safe to call twice. */
sandbox_budget_verdict_e sandbox_budget_disarm(lua_State *L);

/* The slow path of sandbox_budget_step(): charges the steps taken,
 * checks the instruction and time budgets, raises when one ran out. */
void sandbox_budget_check(lua_State *L);

/* n steps of C work at once (n >= 0), e.g. bytes compared / 16. */
void sandbox_budget_charge(lua_State *L, int64_t n);

/* Memory that C code outside the VM's allocator is about to take for
 * the run (cjson's buffers): raises past the memory budget. */
void sandbox_budget_reserve(lua_State *L, int64_t bytes);

/* Around a C function that does not free its own buffers when an error
 * unwinds it (lua-cjson's decode mallocs one the size of its input): on,
 * the allocator refuses nothing, so no refusal unwinds it; off, the
 * memory taken meanwhile is checked against the budget (raises past
 * it).  The caller bounds what the function can take beforehand. */
void sandbox_budget_unrefused(lua_State *L, int on);

/* Around a call from C back into the script (a gsub replacement
 * function, a sort comparator): raises past the nesting budget. */
void sandbox_budget_enter(lua_State *L);
void sandbox_budget_leave(lua_State *L);

/* The name of a verdict: "instruction", "memory", "time", "nesting". */
const char *sandbox_budget_name(sandbox_budget_verdict_e v);


/* One step of a C library loop: a match attempt, a backtrack, a byte
 * scanned, a comparison.  Costs a decrement while the budget lasts. */
#define sandbox_budget_step(L)                                             \
    do {                                                                   \
        if (--sandbox_budget.ticks < 0) {                                  \
            sandbox_budget_check(L);                                       \
        }                                                                  \
    } while (0)


#endif /* SANDBOX_BUDGET_H */
