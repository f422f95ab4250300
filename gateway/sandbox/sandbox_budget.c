/*
 * The budgets of one sandboxed run (sandbox_budget.h).
 *
 * Instructions: a count hook every SANDBOX_HOOK_EVERY VM instructions
 * adds them to what the run spent; the C library's loops spend through
 * sandbox_budget_step(), in chunks of at most SANDBOX_TICKS steps, so
 * that a single C call is checked while it runs.  The clock is read at
 * every hook and every chunk: a vDSO call, some 20 ns per thousand
 * instructions.
 *
 * Memory: the VM's allocator is wrapped.  While a run is armed, growth
 * past the budget is refused where it is asked for, and LuaJIT raises
 * "not enough memory" at that allocation.  Garbage counts until it is
 * collected, so once the heap has grown halfway from where the last
 * collection left it to the limit, the wrapper moves the hook to the
 * very next instruction and the hook collects there, at a point where
 * the VM may run the collector.  A run is refused only when what it
 * keeps, plus what it made since that collection, passes the budget.
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "sandbox_budget.h"


#define SANDBOX_HOOK_EVERY  1000
#define SANDBOX_TICKS       4096
#define SANDBOX_UNARMED     INT64_MAX


sandbox_budget_t  sandbox_budget = { SANDBOX_UNARMED, 0 };


/* a VM's allocator and what it holds; one per VM, kept for the life of
 * the process (a master makes a VM per reload, a worker has one) */
typedef struct sandbox_vm_s  sandbox_vm_t;

struct sandbox_vm_s {
    lua_Alloc                  alloc;       /* the VM's own allocator */
    void                      *alloc_ud;
    int64_t                    used;        /* bytes held, since init */
    sandbox_vm_t              *next;
};


typedef struct {
    sandbox_vm_t              *vm;          /* the armed run's VM */
    lua_State                 *L;           /* the armed run's thread */
    sandbox_budget_limits_t    limits;
    int64_t                    spent;       /* instructions and steps */
    int64_t                    refill;      /* the last chunk of ticks */
    int64_t                    mem_limit;   /* vm->used may not pass it */
    int64_t                    gc_mark;     /* collect past it */
    uint64_t                   deadline;    /* CLOCK_MONOTONIC, ns */
    int                        hook_every;  /* the count hook's period */
    int                        depth;
    unsigned                   collecting:1;
    unsigned                   unrefused:1;
    unsigned                   gc_wanted:1;
    sandbox_budget_verdict_e   verdict;
} sandbox_run_t;


static sandbox_run_t   run;
static sandbox_vm_t   *vms;

/* the error a budget raises, interned once and kept in the registry */
#define SANDBOX_BUDGET_ERROR  "sandbox: budget exceeded"
#define SANDBOX_BUDGET_KEY    "gateway.sandbox.budget_error"


static void sandbox_budget_hook(lua_State *L, lua_Debug *ar);


static uint64_t
sandbox_budget_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void *
sandbox_budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    void          *p;
    int64_t        grow;
    sandbox_vm_t  *vm = ud;

    grow = (int64_t) nsize - (int64_t) osize;

    if (vm != run.vm || !sandbox_budget.armed) {
        p = vm->alloc(vm->alloc_ud, ptr, osize, nsize);

        if (p != NULL || nsize == 0) {
            vm->used += grow;
        }

        return p;
    }

    if (grow > 0 && !run.collecting && !run.unrefused
        && vm->used + grow > run.mem_limit)
    {
        if (run.verdict == SANDBOX_BUDGET_OK) {
            run.verdict = SANDBOX_BUDGET_MEMORY;
        }

        return NULL;
    }

    p = vm->alloc(vm->alloc_ud, ptr, osize, nsize);

    if (p == NULL && nsize > 0) {
        return NULL;
    }

    vm->used += grow;

    if (vm->used > run.gc_mark && !run.gc_wanted && !run.collecting) {
        /* collect before the next instruction: only the hook may; the
         * period cut short counts as whole */
        run.gc_wanted = 1;
        run.spent += run.hook_every;
        run.hook_every = 1;
        lua_sethook(run.L, sandbox_budget_hook, LUA_MASKCOUNT, 1);
    }

    return p;
}


int
sandbox_budget_init(lua_State *L)
{
    void          *ud;
    lua_Alloc      f;
    sandbox_vm_t  *vm;

    f = lua_getallocf(L, &ud);

    if (f == sandbox_budget_alloc) {
        return 0;
    }

    vm = malloc(sizeof(sandbox_vm_t));
    if (vm == NULL) {
        return luaL_error(L, "sandbox: no memory for the allocator");
    }

    vm->alloc = f;
    vm->alloc_ud = ud;
    vm->used = 0;
    vm->next = vms;
    vms = vm;

    lua_setallocf(L, sandbox_budget_alloc, vm);

    lua_pushliteral(L, SANDBOX_BUDGET_ERROR);
    lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_BUDGET_KEY);

    return 0;
}


static void
sandbox_budget_raise(lua_State *L, sandbox_budget_verdict_e v)
{
    if (run.verdict == SANDBOX_BUDGET_OK) {
        run.verdict = v;
    }

    /* the script cannot catch it (no pcall in the sandbox); should one
     * ever, every later check raises again */
    sandbox_budget.ticks = 0;
    run.refill = 0;

    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_BUDGET_KEY);
    lua_error(L);
}


/* the instruction and time budgets, after "spent" moved */
static void
sandbox_budget_verify(lua_State *L)
{
    if (run.verdict != SANDBOX_BUDGET_OK) {
        sandbox_budget_raise(L, run.verdict);
    }

    if (run.spent > run.limits.instructions) {
        sandbox_budget_raise(L, SANDBOX_BUDGET_INSTRUCTION);
    }

    if (sandbox_budget_now() > run.deadline) {
        sandbox_budget_raise(L, SANDBOX_BUDGET_TIME);
    }
}


static void
sandbox_budget_refill(void)
{
    int64_t  left;

    left = run.limits.instructions - run.spent;

    run.refill = left < SANDBOX_TICKS ? (left > 0 ? left : 0) : SANDBOX_TICKS;
    sandbox_budget.ticks = run.refill;
}


static void
sandbox_budget_hook(lua_State *L, lua_Debug *ar)
{
    (void) ar;

    if (!sandbox_budget.armed) {
        return;
    }

    run.spent += run.hook_every;

    if (run.gc_wanted) {
        run.gc_wanted = 0;

        run.collecting = 1;
        lua_gc(L, LUA_GCCOLLECT, 0);
        run.collecting = 0;

        run.gc_mark = run.vm->used + (run.mem_limit - run.vm->used) / 2;

        run.hook_every = SANDBOX_HOOK_EVERY;
        lua_sethook(L, sandbox_budget_hook, LUA_MASKCOUNT, SANDBOX_HOOK_EVERY);
    }

    sandbox_budget_verify(L);
}


int
sandbox_budget_arm(lua_State *L, const sandbox_budget_limits_t *limits)
{
    void  *ud;

    if (lua_getallocf(L, &ud) != sandbox_budget_alloc) {
        return -1;
    }

    run.vm = ud;
    run.L = L;
    run.limits = *limits;
    run.spent = 0;
    run.depth = 0;
    run.verdict = SANDBOX_BUDGET_OK;
    run.collecting = 0;
    run.unrefused = 0;
    run.gc_wanted = 0;
    run.deadline = sandbox_budget_now() + (uint64_t) limits->time_ns;

    run.mem_limit = run.vm->used + limits->memory;
    run.gc_mark = run.vm->used + limits->memory / 2;

    sandbox_budget.armed = 1;
    sandbox_budget_refill();

    run.hook_every = SANDBOX_HOOK_EVERY;
    lua_sethook(L, sandbox_budget_hook, LUA_MASKCOUNT, SANDBOX_HOOK_EVERY);

    return 0;
}


sandbox_budget_verdict_e
sandbox_budget_disarm(lua_State *L)
{
    if (sandbox_budget.armed) {
        lua_sethook(L, NULL, 0, 0);
        sandbox_budget.armed = 0;
        sandbox_budget.ticks = SANDBOX_UNARMED;
        run.L = NULL;
        run.vm = NULL;
    }

    return run.verdict;
}


void
sandbox_budget_check(lua_State *L)
{
    if (!sandbox_budget.armed) {
        sandbox_budget.ticks = SANDBOX_UNARMED;
        return;
    }

    /* the chunk is used up: ticks went from refill to -1 */
    run.spent += run.refill - sandbox_budget.ticks;

    sandbox_budget_verify(L);
    sandbox_budget_refill();
}


void
sandbox_budget_charge(lua_State *L, int64_t n)
{
    if (!sandbox_budget.armed || n <= 0) {
        return;
    }

    run.spent += n;

    sandbox_budget_verify(L);
}


void
sandbox_budget_reserve(lua_State *L, int64_t bytes)
{
    if (!sandbox_budget.armed || run.vm->used + bytes <= run.mem_limit) {
        return;
    }

    /* garbage counts until collected: collect before deciding */
    run.collecting = 1;
    lua_gc(L, LUA_GCCOLLECT, 0);
    run.collecting = 0;

    if (run.vm->used + bytes > run.mem_limit) {
        sandbox_budget_raise(L, SANDBOX_BUDGET_MEMORY);
    }
}


void
sandbox_budget_unrefused(lua_State *L, int on)
{
    if (!sandbox_budget.armed) {
        return;
    }

    run.unrefused = on ? 1 : 0;

    if (!on) {
        /* what the call took counts now, as if asked for before */
        sandbox_budget_reserve(L, 0);
    }
}


void
sandbox_budget_enter(lua_State *L)
{
    if (!sandbox_budget.armed) {
        return;
    }

    if (++run.depth > run.limits.nesting) {
        sandbox_budget_raise(L, SANDBOX_BUDGET_NESTING);
    }
}


void
sandbox_budget_leave(lua_State *L)
{
    (void) L;

    if (run.depth > 0) {
        run.depth--;
    }
}


const char *
sandbox_budget_name(sandbox_budget_verdict_e v)
{
    switch (v) {
    case SANDBOX_BUDGET_INSTRUCTION:
        return "instruction";
    case SANDBOX_BUDGET_MEMORY:
        return "memory";
    case SANDBOX_BUDGET_TIME:
        return "time";
    case SANDBOX_BUDGET_NESTING:
        return "nesting";
    default:
        return "none";
    }
}
