-- Runs untrusted scripts (location /sandbox/) under per-request budgets,
-- with a whitelisted environment.
--
--   content_by_lua_block {
--       require("gateway.sandbox").serve{ instructions = 1e6,
--           memory = 8 * 1024 * 1024, output = 1024 * 1024, time = 1 }
--   }
--
-- The script comes from the route guard (its own root), compiled once
-- per version by gateway.router's cache, text only, with the JIT off for
-- the chunk and every function it creates (hooks do not run in traces).
-- The budgets are enforced where the work is done, by the C side
-- (gateway/sandbox/, preloaded as gateway.sandbox.core): a count hook
-- every thousand VM instructions, steps counted inside the pattern
-- functions and sort, the VM's allocator refusing growth past the memory
-- budget.  The library the script sees is gateway.sandbox.lib.  Output
-- is buffered and sent only when the script ends well, so a budget
-- error is always a clean 503.  The script never yields: no coroutine,
-- and ngx.exit unwinds to run().  README.md, "The sandbox", lists the
-- guarantees.

local core = require "gateway.sandbox.core"
local lib = require "gateway.sandbox.lib"
local router = require "gateway.router"
local errors = require "gateway.errors"
local gateway_status = require "gateway.status"
local metrics = require "gateway.metrics"

local getmetatable = getmetatable
local jit_off = jit.off
local ngx = ngx
local setfenv = setfenv
local tostring = tostring
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local run_armed = core.run
local METHODS = lib.METHODS
local STOP = lib.STOP


local _M = { _VERSION = "0.2" }


_M.DEFAULTS = {
    instructions = 1000000,          -- VM instructions + counted C work
    memory = 8 * 1024 * 1024,        -- bytes of Lua heap growth
    output = 1024 * 1024,            -- bytes of response body
    time = 1,                        -- seconds of wall time
    nesting = 8,                     -- callbacks from C into the script
}


local function opt(opts, k)
    local v = opts and opts[k]
    if v == nil then
        return _M.DEFAULTS[k]
    end
    return v
end


-- Runs fn under the budgets in opts.  Returns the buffered output and
-- the exit status (0: none), or nil, the budget exceeded or "error",
-- and the error.
function _M.run(fn, opts)
    local env, state = lib.begin(opt(opts, "output"))
    setfenv(fn, env)

    local mt = getmetatable("")
    local index = mt.__index
    mt.__index = METHODS

    local ok, err, budget = run_armed(fn, opt(opts, "instructions"),
                                      opt(opts, "memory"), opt(opts, "time"),
                                      opt(opts, "nesting"))

    mt.__index = index
    local buf, exit = state.buf, state.exit
    budget = budget or state.failed
    lib.finish()

    if budget then
        return nil, budget
    end

    if not ok and err ~= STOP then
        return nil, "error", err
    end

    return buf, exit
end


local function prepare(fn)
    jit_off(fn, true)
end

local scripts = router.new_cache{ prepare = prepare, tree = "sandbox" }


function _M.serve(opts)
    local fn, status = router.chunk(scripts)

    if fn == nil then
        return errors.exit(status)
    end

    local buf, err
    buf, status, err = _M.run(fn, opts)

    if buf == nil then
        if status == "error" then
            log(ERR, "sandbox: ", ngx.var.route_name, ": ", tostring(err))
            return errors.send(500, "script_error")
        end

        local name = ngx.var.route_name

        log(WARN, "sandbox: ", name, ": ", status, " budget exceeded")
        metrics.budget_hit(status)
        gateway_status.budget_hit(scripts.tree, name, status)

        return errors.send(503, "budget_exceeded", { "budget", status })
    end

    if status >= 300 then
        return ngx.exit(status)
    end

    if status ~= 0 then
        ngx.status = status
    end

    -- one say, the usual case: no table for ngx.print to walk
    local n = #buf
    if n == 2 and buf[2] == "\n" then
        return ngx.say(buf[1])
    end
    if n == 1 then
        return ngx.print(buf[1])
    end
    return ngx.print(buf)
end


return _M
