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
-- While it runs, a count hook checks the instruction, memory and time
-- budgets before every VM instruction; the C functions it may call are
-- wrapped so that no single call can do unbounded work or allocate past
-- the memory budget.  Output is buffered and sent only when the script
-- ends well, so a budget error is always a clean 503.  The script never
-- yields: no coroutine, and ngx.exit unwinds to serve() which exits after
-- the hook is disarmed.  README.md, "The sandbox", lists the guarantees.

local bit = require "bit"
local cjson = require "cjson.safe"
local router = require "gateway.router"
local errors = require "gateway.errors"
local gateway_status = require "gateway.status"

local bxor = bit.bxor
local lshift = bit.lshift
local rshift = bit.rshift
local collectgarbage = collectgarbage
local error = error
local getmetatable = getmetatable
local jit_off = jit.off
local ngx = ngx
local pairs = pairs
local rawget = rawget
local select = select
local sethook = debug.sethook
local setfenv = setfenv
local setmetatable = setmetatable
local tostring = tostring
local type = type
local xpcall = xpcall
local floor = math.floor
local log = ngx.log
local now = ngx.now
local update_time = ngx.update_time
local ERR = ngx.ERR
local WARN = ngx.WARN
local str_find = string.find
local str_format = string.format
local str_gmatch = string.gmatch
local str_gsub = string.gsub
local str_match = string.match
local str_rep = string.rep
local str_sub = string.sub
local tbl_concat = table.concat
local tbl_insert = table.insert
local tbl_remove = table.remove
local tbl_sort = table.sort


local _M = { _VERSION = "0.1" }


_M.DEFAULTS = {
    instructions = 1000000,          -- VM instructions (+ charged C work)
    memory = 8 * 1024 * 1024,        -- bytes of Lua heap growth
    output = 1024 * 1024,            -- bytes of response body
    time = 1,                        -- seconds of wall time
    nesting = 8,                     -- callbacks from C into the script
    pattern_steps = 10000000,        -- worst-case steps of one pattern call
}

-- the wall clock is read every TIME_EVERY hook calls (a system call)
local TIME_EVERY = 256


-- the run in progress (one at a time per worker: the script never yields)
local cur

-- raised to end the script: budget errors and ngx.exit
local STOP = {}


local function fail(budget)
    local s = cur
    if s.failed == nil then
        s.failed = budget
    end
    error(STOP, 0)
end


local function used_memory(s)
    return collectgarbage("count") * 1024 - s.mem0
end


local function check_memory(s)
    if used_memory(s) > s.memory then
        -- garbage counts until collected: collect before deciding
        collectgarbage("collect")
        if used_memory(s) > s.memory then
            fail("memory")
        end
    end
end


local function check_time(s)
    update_time()
    if now() > s.deadline then
        fail("time")
    end
end


-- before every VM instruction of the script
local function hook()
    local s = cur
    if s == nil or s.failed then
        return      -- raise at most once per run
    end

    local n = s.count + 1
    s.count = n

    if n > s.instructions then
        fail("instruction")
    end

    check_memory(s)

    if n % TIME_EVERY == 0 then
        check_time(s)
    end
end


-- C work done by a wrapped function, counted as instructions
local function charge(n)
    local s = cur
    s.count = s.count + n
    if s.count > s.instructions then
        fail("instruction")
    end
    if n > 10000 then
        check_time(s)
    end
end


-- a C call about to produce `bytes`
local function reserve(bytes)
    local s = cur
    if bytes > s.memory - used_memory(s) then
        collectgarbage("collect")
        if bytes > s.memory - used_memory(s) then
            fail("memory")
        end
    end
end


-- wraps a script function that C code calls back: at most s.nesting
-- such calls may be active at once (C stack)
local function nested(fn)
    return function(...)
        local s = cur
        local d = s.depth + 1
        if d > s.nesting then
            fail("nesting")
        end
        s.depth = d
        return (function(...)
            s.depth = d - 1
            return ...
        end)(fn(...))
    end
end


-- pattern functions: Lua's matcher backtracks, its worst case on a
-- subject of n bytes is n^(q+1) steps (q unbounded quantifiers, one
-- factor less when anchored); refuse the calls that could exceed
-- pattern_steps, charge the others n.
local function check_pattern(subject, pattern, plain)
    if type(subject) == "number" then
        subject = tostring(subject)
    end
    if type(subject) ~= "string" then
        return      -- the real function raises the error
    end

    local n = #subject + 1
    charge(n)

    if plain or type(pattern) ~= "string" then
        return
    end

    local q = 0
    local p = str_gsub(str_gsub(pattern, "%%.", "x"), "%[.-%]", "x")
    for _ in str_gmatch(p, "[*+-]") do
        q = q + 1
    end

    local k = q + 1
    if str_sub(pattern, 1, 1) == "^" then
        k = k - 1
    end

    if k > 1 and n ^ k > cur.pattern_steps then
        fail("instruction")
    end
end


-- the whitelisted library, built once; every request gets views of it

local S = {}

for _, k in pairs{ "byte", "char", "len", "lower", "upper", "reverse",
                   "sub" } do
    S[k] = string[k]
end

S.rep = function(s, n, sep)
    if type(s) == "number" then
        s = tostring(s)
    end
    if type(s) == "string" and type(n) == "number" and n > 0 then
        local size = #s * floor(n)
        if type(sep) == "string" then
            size = size + #sep * (floor(n) - 1)
        end
        reserve(size)
    end
    return str_rep(s, n, sep)
end

S.format = function(fmt, ...)
    if type(fmt) == "string" then
        local size = #fmt
        for i = 1, select("#", ...) do
            local v = select(i, ...)
            -- widths and precisions have 2 digits at most; %q doubles
            size = size + 512
            if type(v) == "string" then
                size = size + 2 * #v
            end
        end
        reserve(size)
    end
    return str_format(fmt, ...)
end

S.find = function(s, pattern, init, plain)
    check_pattern(s, pattern, plain)
    return str_find(s, pattern, init, plain)
end

S.match = function(s, pattern, init)
    check_pattern(s, pattern)
    return str_match(s, pattern, init)
end

S.gmatch = function(s, pattern)
    local it = str_gmatch(s, pattern)
    return function()
        check_pattern(s, pattern)
        return it()
    end
end

S.gsub = function(s, pattern, repl, max_n)
    check_pattern(s, pattern)

    local t = type(repl)
    if (t == "string" or t == "number") and type(s) == "string" then
        -- matches do not overlap: each %0-%9 adds at most #s in all
        repl = tostring(repl)
        local refs = 0
        for _ in str_gmatch(repl, "%%%d") do
            refs = refs + 1
        end
        local matches = #s + 1
        if type(max_n) == "number" and max_n < matches then
            matches = max_n > 0 and floor(max_n) or 0
        end
        reserve(#s + matches * #repl + refs * #s)

    elseif t == "function" or t == "table" then
        local get = repl
        if t == "table" then
            local map = repl
            get = function(k) return rawget(map, k) end
        end
        get = nested(get)
        repl = function(...)
            local v = get(...)
            if type(v) == "string" then
                reserve(#v)
            end
            return v
        end
    end

    return str_gsub(s, pattern, repl, max_n)
end

local T = {
    maxn = table.maxn,
}

T.concat = function(t, sep, i, j)
    if type(t) == "table" then
        i = i or 1
        j = j or #t
        local step = type(sep) == "string" and #sep or 0
        local size = 0
        for k = i, j do
            local v = rawget(t, k)
            local tv = type(v)
            if tv == "string" then
                size = size + #v + step
            elseif tv == "number" then
                size = size + 32 + step
            else
                break       -- the real function raises the error
            end
            if size > cur.memory then
                reserve(size)
            end
        end
        reserve(size)
    end
    return tbl_concat(t, sep, i, j)
end

T.insert = function(t, ...)
    if type(t) == "table" then
        charge(#t)
    end
    return tbl_insert(t, ...)
end

T.remove = function(t, ...)
    if type(t) == "table" then
        charge(#t)
    end
    return tbl_remove(t, ...)
end

T.sort = function(t, comp)
    if type(t) == "table" then
        local n = #t
        charge(n * (1 + floor(math.log(n + 1) / math.log(2))))
    end
    if type(comp) == "function" then
        comp = nested(comp)
    end
    return tbl_sort(t, comp)
end

local M = {}

for k, v in pairs(math) do
    if k ~= "random" and k ~= "randomseed" then
        M[k] = v
    end
end


-- math.random of a script: a generator of its own (xorshift32), seeded
-- from the worker's, so that a script can neither see the numbers other
-- requests drew nor steer them
local function new_random()
    local x = math.random(1, 0x7fffffff)

    return function(m, n)
        x = bxor(x, lshift(x, 13))
        x = bxor(x, rshift(x, 17))
        x = bxor(x, lshift(x, 5))

        local r = (x % 0x100000000) / 0x100000000     -- [0, 1)

        if m == nil then
            return r
        end

        if n == nil then
            m, n = 1, m
        end

        if type(m) ~= "number" or type(n) ~= "number" or m > n then
            error("bad argument to 'random' (interval is empty)", 2)
        end

        return floor(r * (n - m + 1)) + m
    end
end


-- the string metatable's __index while a script runs: method calls
-- ("x"):rep(n) reach the wrapped functions, never the real ones; a
-- table of its own, so that what a script writes into its `string`
-- does not reach method calls (or trusted code called meanwhile)
local METHODS = {}
for k, v in pairs(S) do
    METHODS[k] = v
end


-- a request's own view of a whitelisted table: reads fall through to
-- the table, writes stay in the view (rawset and getmetatable are not
-- exposed, so the table itself cannot be reached); cheaper than a copy
local views = setmetatable({}, { __mode = "k" })

local function view(t, own)
    local mt = views[t]
    if mt == nil then
        mt = { __index = t, __metatable = false }
        views[t] = mt
    end
    return setmetatable(own or {}, mt)
end


local function out(newline, ...)
    local s = cur
    local buf = s.buf
    local n = select("#", ...)

    for i = 1, n do
        local v = select(i, ...)
        local t = type(v)
        if t == "number" or t == "boolean" or v == nil then
            v = tostring(v)
        elseif t ~= "string" then
            error("bad argument #" .. i .. " to 'say' (string expected, got "
                  .. t .. ")", 3)
        end
        local size = s.out + #v
        if size > s.output then
            fail("output")
        end
        s.out = size
        buf[#buf + 1] = v
    end

    if newline then
        if s.out + 1 > s.output then
            fail("output")
        end
        s.out = s.out + 1
        buf[#buf + 1] = "\n"
    end

    return 1
end

local function say(...)
    return out(true, ...)
end

local function print(...)
    return out(false, ...)
end

local function exit(status)
    if type(status) ~= "number" or status ~= floor(status)
       or (status ~= 0 and (status < 200 or status > 599))
    then
        error("bad argument #1 to 'exit' (a status 200-599 expected)", 2)
    end
    cur.exit = status
    error(STOP, 0)
end

local var_mt = {
    __index = function(_, k)
        return ngx.var[k]
    end,
    __newindex = function()
        error("ngx.var is read-only in the sandbox", 2)
    end,
}

local function get_headers()
    return ngx.req.get_headers()
end

local function get_uri_args()
    return ngx.req.get_uri_args()
end

local json_encode = cjson.encode
local json_decode = cjson.decode

-- the size of a value's JSON text, at most limit (then stops)
local function json_size(v, limit, depth)
    local t = type(v)
    if t == "string" then
        return 6 * #v + 2       -- \uXXXX at worst
    elseif t ~= "table" then
        return 32
    end
    if depth > 1000 then
        return limit + 1        -- cjson refuses it anyway
    end
    local size = 2
    for k, x in pairs(v) do
        size = size + json_size(k, limit, depth + 1)
                    + json_size(x, limit, depth + 1) + 2
        if size > limit then
            return size
        end
    end
    return size
end

local function encode(v)
    charge(1)
    local limit = cur.memory - used_memory(cur)
    reserve(json_size(v, limit, 0))
    return json_encode(v)
end

local function decode(text)
    if type(text) == "string" then
        -- a decoded value takes some 40 bytes per byte of text at most
        charge(#text)
        reserve(40 * #text)
    end
    return json_decode(text)
end


local function new_env()
    return {
        assert = assert, error = error, ipairs = ipairs, next = next,
        pairs = pairs, select = select, tonumber = tonumber,
        tostring = tostring, type = type, unpack = unpack,
        rawequal = rawequal, rawget = rawget,

        string = view(S),
        table = view(T),
        math = view(M, { random = new_random() }),

        ngx = {
            say = say, print = print, exit = exit,
            var = setmetatable({}, var_mt),
            req = { get_headers = get_headers,
                    get_uri_args = get_uri_args },
            HTTP_OK = 200, HTTP_NOT_FOUND = 404,
            HTTP_BAD_REQUEST = 400, HTTP_FORBIDDEN = 403,
        },

        json = { encode = encode, decode = decode },
    }
end


local function disarm(err)
    sethook()
    return err
end

local function body(fn)
    fn()
    sethook()
end


local function prepare(fn)
    jit_off(fn, true)
end

local scripts = router.new_cache{ prepare = prepare, tree = "sandbox" }


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
    local env = new_env()
    setfenv(fn, env)

    update_time()

    local s = {
        instructions = opt(opts, "instructions"),
        memory = opt(opts, "memory"),
        output = opt(opts, "output"),
        deadline = now() + opt(opts, "time"),
        nesting = opt(opts, "nesting"),
        pattern_steps = opt(opts, "pattern_steps"),
        count = 0, depth = 0, out = 0, buf = {}, exit = 0,
        mem0 = collectgarbage("count") * 1024,
    }

    local mt = getmetatable("")
    local index = mt.__index

    cur = s
    mt.__index = METHODS

    sethook(hook, "", 1)
    local ok, err = xpcall(body, disarm, fn)
    sethook()

    mt.__index = index
    cur = nil

    if s.failed then
        return nil, s.failed
    end

    if not ok and err ~= STOP then
        return nil, "error", err
    end

    return s.buf, s.exit
end


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
        gateway_status.budget_hit(scripts.tree, name, status)

        return errors.send(503, "budget_exceeded", { "budget", status })
    end

    if status >= 300 then
        return ngx.exit(status)
    end

    if status ~= 0 then
        ngx.status = status
    end
    ngx.print(buf)
    return ngx.exit(ngx.HTTP_OK)
end


return _M
