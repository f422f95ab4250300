-- The library a sandboxed script sees: the whitelist, and for every
-- function that can do more than constant work a bound on it.
--
-- Work in C is counted where it happens: the pattern functions and sort
-- are gateway.sandbox.core's (steps counted while they run); the others
-- charge the bytes they produce or read, one instruction per 64 bytes
-- (what memcpy does in the time of an interpreted instruction or two),
-- after the call (one call is bounded by the memory budget, which the
-- allocator enforces).  The functions scripts call are interpreted, like
-- the scripts, so that the count hook sees their own loops too.
-- README.md, "The sandbox", lists every function and its bound.

jit.off(true, true)

local bit = require "bit"
local cjson = require "cjson.safe"
local core = require "gateway.sandbox.core"
local new_tab = require "table.new"

local bxor = bit.bxor
local lshift = bit.lshift
local rshift = bit.rshift
local error = error
local floor = math.floor
local next = next
local pairs = pairs
local select = select
local rawset = rawset
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack
local charge = core.charge
local reserve = core.reserve
local unrefused = core.unrefused
local str_find = string.find
local str_format = string.format
local str_lower = string.lower
local str_rep = string.rep
local str_reverse = string.reverse
local str_sub = string.sub
local str_upper = string.upper
local tbl_concat = table.concat
local tbl_insert = table.insert
local tbl_remove = table.remove
local json_encode = cjson.encode
local json_decode = cjson.decode


local _M = { _VERSION = "0.2" }


local BYTES_PER_STEP = 64

-- below this many bytes a call's work is lost in its call's cost
local CHARGE_ABOVE = 1024

local function charge_bytes(n)
    if n > CHARGE_ABOVE then
        charge(n / BYTES_PER_STEP)
    end
end


-- the run in progress (one at a time per worker: a script never yields)
local run

-- raised to end the script: ngx.exit and the output budget
_M.STOP = {}

local function stop(budget)
    run.failed = budget
    error(_M.STOP, 0)
end


-- tostring of a table, function, userdata or thread: its kind and a
-- number of the request's own, never an address
local function name_of(v)
    local names = run.names
    if names == nil then
        names = setmetatable({}, { __mode = "k" })
        run.names = names
    end

    local name = names[v]
    if name == nil then
        run.named = run.named + 1
        name = type(v) .. ": " .. run.named
        names[v] = name
    end

    return name
end

local function sandbox_tostring(v)
    local t = type(v)
    if t == "table" or t == "function" or t == "userdata" or t == "thread"
    then
        return name_of(v)
    end
    return tostring(v)
end


local function sandbox_tonumber(v, base)
    if type(v) == "string" then
        charge_bytes(#v)
    end
    return tonumber(v, base)
end


-- string

local function produced(s)
    if type(s) == "string" then
        charge_bytes(#s)
    end
    return s
end

local string_lib = {
    byte = string.byte,             -- at most 8000 results (LuaJIT)
    char = string.char,             -- one byte per argument
    len = string.len,
    find = core.find,
    match = core.match,
    gmatch = core.gmatch,
    gsub = core.gsub,
}

string_lib.lower = function(s)
    return produced(str_lower(s))
end

string_lib.upper = function(s)
    return produced(str_upper(s))
end

string_lib.reverse = function(s)
    return produced(str_reverse(s))
end

string_lib.sub = function(s, i, j)
    return produced(str_sub(s, i, j))
end

string_lib.rep = function(s, n, sep)
    return produced(str_rep(s, n, sep))
end

-- %s of a table or function would print its address, %p of any value
-- but a number: both print the value's name instead

local function is_object(t)
    return t == "table" or t == "function" or t == "userdata"
           or t == "thread"
end

-- fmt with every %p made a %s, and args[k] of each the name it prints
local function without_p(fmt, args)
    local out
    local from, i, k = 1, 1, 0
    while true do
        local q = str_find(fmt, "%", i, true)
        if q == nil then
            break
        end
        local e = str_find(fmt, "[^-+ #0-9.]", q + 1)
        if e == nil then
            break               -- malformed: format raises the error
        end
        local c = str_sub(fmt, e, e)
        if c ~= "%" then
            k = k + 1
            if c == "p" then
                local v = args[k]
                local t = type(v)
                if t == "string" or is_object(t) then
                    args[k] = name_of(v)
                elseif k <= #args then
                    args[k] = "NULL"
                end
                out = out or {}
                out[#out + 1] = str_sub(fmt, from, e - 1)
                out[#out + 1] = "s"
                from = e + 1
            end
        end
        i = e + 1
    end
    if out == nil then
        return fmt
    end
    out[#out + 1] = str_sub(fmt, from)
    return tbl_concat(out)
end

string_lib.format = function(fmt, ...)
    local n = select("#", ...)
    if type(fmt) ~= "string" or n == 0 then
        return produced(str_format(fmt, ...))
    end

    -- a conversion that may be %p: without_p() tells for sure (linear:
    -- each run of flags and digits ends at the next %)
    local args
    if str_find(fmt, "%%[-+ #0-9.]*p") then
        args = { ... }
        charge_bytes(#fmt)
        fmt = without_p(fmt, args)
    end

    for i = 1, n do
        local v = select(i, ...)
        if is_object(type(v)) then
            args = args or { ... }
            if args[i] == v then
                args[i] = name_of(v)
            end
        end
    end

    if args == nil then
        return produced(str_format(fmt, ...))
    end
    return produced(str_format(fmt, unpack(args, 1, n)))
end


-- table

local table_lib = {
    sort = core.sort,
}

table_lib.concat = function(t, sep, i, j)
    local s = tbl_concat(t, sep, i, j)
    local n = (j or #t) - (i or 1) + 1
    charge((n > 0 and n or 0) + #s / BYTES_PER_STEP)
    return s
end

-- both move the elements after the position: #t of them at most
table_lib.insert = function(t, ...)
    if type(t) == "table" then
        charge(#t)
    end
    return tbl_insert(t, ...)
end

table_lib.remove = function(t, ...)
    if type(t) == "table" then
        charge(#t)
    end
    return tbl_remove(t, ...)
end

-- LuaJIT's walks the whole table in one call: here the walk is counted
table_lib.maxn = function(t)
    if type(t) ~= "table" then
        error("bad argument #1 to 'maxn' (table expected, got "
              .. (t == nil and "no value" or type(t)) .. ")", 2)
    end
    local m = 0
    for k in next, t do
        if type(k) == "number" and k > m then
            m = k
        end
    end
    return m
end


-- math, but for random

local math_lib = {}

for k, v in pairs(math) do
    if k ~= "random" and k ~= "randomseed" then
        math_lib[k] = v
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


-- json: cjson's encoder writes into a buffer of its own (malloc, not the
-- VM's allocator), so the document's size is bounded first, by a walk
-- that is counted like any Lua loop

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

-- no budget is larger
local JSON_LIMIT = 2 ^ 40

local function encode(v)
    local size = json_size(v, JSON_LIMIT, 0)
    reserve(size)
    return produced(json_encode(v))
end

-- Decoding takes a malloc'd buffer the size of the text, which lua-cjson
-- frees only when it returns: an allocation refused inside it would leak
-- the buffer, request after request.  So it runs with the allocator
-- refusing nothing (core.unrefused), after the worst it can take is
-- reserved: the buffer, and at most DECODED bytes of Lua heap per byte
-- of text (about 30 in the worst documents: "[{},{},...]", growing
-- arrays and hashes, new strings).
local DECODED = 64

local function decode(text)
    if type(text) == "number" then
        text = tostring(text)       -- as lua-cjson would, inside
    elseif type(text) ~= "string" then
        return json_decode(text)    -- refused before any buffer
    end
    reserve((DECODED + 1) * #text)
    charge_bytes(#text)
    return unrefused(json_decode, text)
end


-- ngx

local function out(newline, ...)
    local r = run
    local buf = r.buf
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
        local size = r.out + #v
        if size > r.output then
            stop("output")
        end
        r.out = size
        buf[#buf + 1] = v
    end

    if newline then
        if r.out + 1 > r.output then
            stop("output")
        end
        r.out = r.out + 1
        buf[#buf + 1] = "\n"
    end

    return 1
end

-- one string: the common case, without the loop
local function say(v, ...)
    if type(v) == "string" and select("#", ...) == 0 then
        local r = run
        local size = r.out + #v + 1
        if size > r.output then
            stop("output")
        end
        r.out = size
        local buf = r.buf
        buf[#buf + 1] = v
        buf[#buf + 1] = "\n"
        return 1
    end
    return out(true, v, ...)
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
    run.exit = status
    error(_M.STOP, 0)
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


-- the string metatable's __index while a script runs: method calls
-- ("x"):rep(n) reach the functions above, never the real ones; a table
-- of its own, so that what a script writes into its `string` does not
-- reach method calls (or trusted code called meanwhile)
_M.METHODS = {}
for k, v in pairs(string_lib) do
    _M.METHODS[k] = v
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


-- the globals scripts share: functions, nothing a script can write into
local BASE = {
    assert = assert, error = error, ipairs = ipairs, next = next,
    pairs = pairs, select = select, tonumber = sandbox_tonumber,
    tostring = sandbox_tostring, type = type, unpack = unpack,
    rawequal = rawequal, rawget = rawget,
}

-- read-only, so all requests share it
local VAR = setmetatable({}, var_mt)

-- read-only views: writes raise, reads fall through
local function read_only(t, what)
    return setmetatable({}, {
        __index = t,
        __newindex = function()
            error(what .. " is read-only in the sandbox", 2)
        end,
        __metatable = false,
    })
end

-- ngx: each request writes into a view of its own
local NGX = {
    say = say, print = print, exit = exit, var = VAR,
    req = read_only({ get_headers = get_headers,
                      get_uri_args = get_uri_args }, "ngx.req"),
    HTTP_OK = 200, HTTP_NOT_FOUND = 404,
    HTTP_BAD_REQUEST = 400, HTTP_FORBIDDEN = 403,
}

local ngx_mt = { __index = NGX, __metatable = false }

-- the tables each request has its own of, made when a script first
-- reads them (a script that only says hello makes one)
local OWN = {
    string = function()
        return view(string_lib)
    end,
    table = function()
        return view(table_lib)
    end,
    math = function()
        return view(math_lib, { random = new_random() })
    end,
    json = function()
        return { encode = encode, decode = decode }
    end,
}

local env_mt = {
    __metatable = false,
    __index = function(env, k)
        local v = BASE[k]
        if v == nil then
            local make = OWN[k]
            if make == nil then
                return nil
            end
            v = make()
        end
        rawset(env, k, v)
        return v
    end,
}


-- the state of the run in progress, one table for all runs (a run never
-- yields, so they never overlap): fewer tables a request for the GC
local state = {}


-- Starts a run: its environment, and the state the library keeps for it
-- (output buffer and budget, exit status).  One at a time.
function _M.begin(output)
    local r = state
    -- room for one say: the buffer's array is allocated with the table
    r.buf = new_tab(2, 0)
    r.out = 0
    r.output = output
    r.exit = 0
    r.named = 0
    r.names = nil
    r.failed = nil
    run = r
    -- ngx now: nearly every script reads it
    return setmetatable({ ngx = setmetatable({}, ngx_mt) }, env_mt), r
end

-- Ends the run begun last.  The buffer stays with the caller.
function _M.finish()
    state.buf = nil
    state.names = nil
    run = nil
end


-- the trusted side runs compiled
jit.on(view)
jit.on(_M.begin)
jit.on(_M.finish)


return _M
