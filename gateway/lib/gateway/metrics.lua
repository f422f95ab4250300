-- The gateway's counters, kept in lua_shared_dict gateway_metrics so that
-- they add up across the workers and outlive a worker that dies (until
-- nginx itself stops).  This is the one place counts are kept: GET
-- /metrics renders them (gateway.metrics.prometheus), GET /status reads
-- some of them (gateway.status).
--
--   location /lua/ {
--       route_guard  ...;
--       content_by_lua_block { require("gateway.router").serve() }
--       log_by_lua_block     { require("gateway.metrics").log("routes") }
--   }
--
-- Label values come from the configuration or from the route guard, never
-- from the client: a route is a label only once the guard found its
-- script, and its series go away when the script does (looked at on every
-- scrape); rejected names are counted by reason only.

local ffi = require "ffi"
local base = require "resty.core.base"
local guard = require "gateway.guard"

local C = ffi.C
local get_request = base.get_request
local guard_verdict = guard.verdict
local guard_script = guard.script
local is_rejection = guard.is_rejection
local VERDICTS = guard.VERDICTS
local OK = guard.OK
local ngx = ngx
local shared = ngx.shared
local now = ngx.now
local req_start_time = ngx.req.start_time
local log = ngx.log
local WARN = ngx.WARN
local sort = table.sort
local ipairs = ipairs
local pairs = pairs
local type = type
local tonumber = tonumber
local floor = math.floor
local find = string.find
local sub = string.sub


ffi.cdef[[
int access(const char *path, int mode);
]]


local _M = { _VERSION = "0.2" }


-- upper bounds of the latency buckets, seconds; nginx's clock counts
-- milliseconds, so the first bucket holds the requests served within one
local BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                  1, 2.5, 5, 10 }
local NBUCKETS = #BUCKETS + 1       -- and +Inf
_M.BUCKETS = BUCKETS

-- status classes 1xx to 5xx are counted as 1 to 5, and 0 for a request
-- without a status (the client left first): latency only
local NCLASSES = 5

-- gateway.sandbox's budgets, as it names them when one is exceeded
-- (pattern steps count as instructions)
_M.BUDGETS = { "instruction", "memory", "output", "time", "nesting" }

_M.RELOADS = { "route", "module", "config" }

local F_OK = 0

-- a worker's cache of the keys of each route (by name, and by version),
-- so that counting a request builds no string; emptied when it grows
-- past this many entries
local MAX_KEYED = 4096


local function counters_dict()
    return shared.gateway_metrics
end


local full_warned = false

local function add(dict, key, n)
    local _, err, forcible = dict:incr(key, n, 0)

    if (err or forcible) and not full_warned then
        full_warned = true
        log(WARN, "gateway: lua_shared_dict gateway_metrics is full, ",
            "counters are being lost: make it bigger")
    end
end


-- Keys.  A route's are "<what> <tree> <name> ..."; route names have no
-- spaces (the guard's grammar), so a key splits back into its parts.
-- "n <tree> <name> <class> <bucket>" counts the requests of one status
-- class in one latency bucket: the requests by class and the histogram
-- are both sums of these, so that a request costs two increments (this
-- and the latency sum), not three.  The other counters are "<what>" or
-- "<what> <label> [<label>]".

local function counter_key(what, label, label2)
    if label2 then
        return what .. " " .. label .. " " .. label2
    end

    if label then
        return what .. " " .. label
    end

    return what
end


local keyed = {}        -- tree -> name -> the route's keys
local by_version = {}   -- tree -> the guard's version -> the same keys
local nkeyed = 0


-- every key of the route "<tree> <name>": { id =, sum =, requests =
-- { class -> { bucket -> key } } }
local function new_keys(id)
    local keys = { id = id, requests = {}, sum = "duration_sum " .. id }

    for class = 0, NCLASSES do
        local by_bucket = {}
        for b = 1, NBUCKETS do
            by_bucket[b] = "n " .. id .. " " .. class .. " " .. b
        end
        keys.requests[class] = by_bucket
    end

    return keys
end


local function forget_keys()
    keyed = {}
    by_version = {}
    nkeyed = 0
end


local function route_keys(tree, name)
    local names = keyed[tree]
    local keys = names and names[name]

    if keys then
        return keys
    end

    if nkeyed >= MAX_KEYED then
        forget_keys()
    end

    if not keyed[tree] then
        keyed[tree] = {}
    end

    keys = new_keys(tree .. " " .. name)

    keyed[tree][name] = keys
    nkeyed = nkeyed + 1

    return keys
end


-- the keys of everything recorded about one route (for forgetting it)
local function all_route_keys(id)
    local route = new_keys(id)
    local keys = { "script " .. id, route.sum }

    for class = 0, NCLASSES do
        for _, key in ipairs(route.requests[class]) do
            keys[#keys + 1] = key
        end
    end

    return keys
end


local function bucket(elapsed)
    for i = 1, #BUCKETS do
        if elapsed <= BUCKETS[i] then
            return i
        end
    end

    return NBUCKETS
end


local function count(dict, keys, status, elapsed)
    local class = floor(status / 100)
    if class < 1 or class > NCLASSES then
        class = 0
    end

    add(dict, keys.requests[class][bucket(elapsed)], 1)
    add(dict, keys.sum, elapsed)
end


-- Where a route's script is, so that the scrape can tell when it is gone:
-- recorded by the router at each compile, and by each worker the first
-- time it counts the route (for routes served without the router).
local function register(dict, keys, script)
    keys.registered = true
    dict:set("script " .. keys.id, script)
end


function _M.register(tree, name, script)
    local dict = counters_dict()
    if dict then
        register(dict, route_keys(tree, name), script)
    end
end


-- One request of a route the guard accepted: by status class, and its
-- latency.  "script" may be nil when the caller does not know it.
function _M.route_request(tree, name, script, status, elapsed)
    local dict = counters_dict()
    if not dict then
        return
    end

    local keys = route_keys(tree, name)

    if script and not keys.registered then
        register(dict, keys, script)
    end

    count(dict, keys, status, elapsed)
end


local function bump(key)
    local dict = counters_dict()
    if dict then
        add(dict, key, 1)
    end
end


-- reason: one of the guard's refusals (anything else is not counted)
function _M.rejected(tree, reason)
    if is_rejection(reason) then
        bump(counter_key("rejections", tree, reason))
    end
end


function _M.compiled(ok)
    bump(ok and "compiles" or "compile_failures")
end


-- kind: "route" (a worker compiled a changed script), "module" (a changed
-- module was unloaded), "config" (the agent reloaded nginx)
function _M.reloaded(kind)
    bump(counter_key("reloads", kind))
end


function _M.budget_hit(budget)
    bump(counter_key("budget_hits", budget))
end


-- n workers stuck in one request, killed by the agent's watchdog
function _M.worker_stuck(n)
    local dict = counters_dict()
    if dict then
        add(dict, "worker_stuck", n)
    end
end


-- From log_by_lua in a location with route_guard: counts the request
-- under its route when the guard accepted one, under the rejection's
-- reason otherwise.  "tree" labels the location's routes root.
function _M.log(tree)
    local dict = counters_dict()
    if not dict then
        return
    end

    local r = get_request()
    local result = guard_verdict(r)

    if result == nil then
        return
    end

    if result ~= OK then
        return _M.rejected(tree, VERDICTS[result])
    end

    -- the route's keys by the guard's version number: no string is made
    -- for a request of a route this worker has counted before
    local version = guard_script(r)
    local versions = by_version[tree]
    local keys = versions and versions[version]

    if keys == nil then
        local _, name = guard_verdict(r, true)
        keys = route_keys(tree, name)

        if not keys.registered then
            local _, script = guard_script(r, true)
            register(dict, keys, script)
        end

        -- 0: route_guard_cache off, no versions
        if version ~= 0 then
            if nkeyed >= MAX_KEYED then
                forget_keys()
            end
            if not by_version[tree] then
                by_version[tree] = {}
            end
            by_version[tree][version] = keys
            nkeyed = nkeyed + 1
        end
    end

    return count(dict, keys, ngx.status, now() - req_start_time())
end


-- Reading.

-- A counter summed over the workers, nil before its first increment (or
-- without the dict): ("compiles"), ("compile_failures"), ("reloads",
-- kind), ("budget_hits", budget), ("rejections", tree, reason),
-- ("worker_stuck").
function _M.get(what, label, label2)
    local dict = counters_dict()
    return dict and dict:get(counter_key(what, label, label2))
end


-- Drops the series of routes whose script is gone: what a deleted route
-- leaves behind does not grow the output forever.
function _M.prune()
    local dict = counters_dict()
    if not dict then
        return
    end

    for _, key in ipairs(dict:get_keys(0)) do
        if sub(key, 1, 7) == "script " then
            local script = dict:get(key)

            if script and C.access(script, F_OK) ~= 0 then
                local id = sub(key, 8)

                for _, route_key in ipairs(all_route_keys(id)) do
                    dict:delete(route_key)
                end

                -- this worker registers it again if it comes back
                forget_keys()
            end
        end
    end
end


-- splits "a b c" into its words
local function words(s)
    local list = {}
    local i = 1

    while true do
        local j = find(s, " ", i, true)
        if not j then
            list[#list + 1] = sub(s, i)
            return list
        end
        list[#list + 1] = sub(s, i, j - 1)
        i = j + 1
    end
end


-- Everything counted, grouped, or nil without the dict:
--
--   routes    a list sorted by tree, then name, of { tree =, name =,
--             requests = { class -> n }, duration = { bucket -> n },
--             sum = seconds }: class 0 to 5 (0: no status), bucket 1 to
--             #BUCKETS + 1 (the last: above every bound)
--   counters  { compiles = n, compile_failures = n, worker_stuck = n,
--             reloads = { kind -> n }, budget_hits = { budget -> n },
--             rejections = { tree -> { reason -> n } } }, what was counted
--             at least once
function _M.collect()
    local dict = counters_dict()
    if not dict then
        return nil
    end

    local by_id = {}
    local counters = { reloads = {}, budget_hits = {}, rejections = {} }

    local function route(tree, name)
        local id = tree .. " " .. name
        local entry = by_id[id]
        if not entry then
            entry = { tree = tree, name = name, requests = {},
                      duration = {}, sum = 0 }
            by_id[id] = entry
        end
        return entry
    end

    for _, key in ipairs(dict:get_keys(0)) do
        local v = dict:get(key)

        if type(v) == "number" then
            local parts = words(key)
            local what, nparts = parts[1], #parts

            if what == "n" and nparts == 5 then
                local entry = route(parts[2], parts[3])
                local class, b = tonumber(parts[4]), tonumber(parts[5])
                entry.requests[class] = (entry.requests[class] or 0) + v
                entry.duration[b] = (entry.duration[b] or 0) + v

            elseif what == "duration_sum" and nparts == 3 then
                route(parts[2], parts[3]).sum = v

            elseif what == "rejections" and nparts == 3 then
                local tree = parts[2]
                local reasons = counters.rejections[tree]
                if not reasons then
                    reasons = {}
                    counters.rejections[tree] = reasons
                end
                reasons[parts[3]] = v

            elseif (what == "reloads" or what == "budget_hits")
                   and nparts == 2
            then
                counters[what][parts[2]] = v

            elseif (what == "compiles" or what == "compile_failures"
                    or what == "worker_stuck")
                   and nparts == 1
            then
                counters[what] = v
            end
        end
    end

    local routes = {}
    for _, entry in pairs(by_id) do
        routes[#routes + 1] = entry
    end

    sort(routes, function(a, b)
        if a.tree ~= b.tree then
            return a.tree < b.tree
        end
        return a.name < b.name
    end)

    return routes, counters
end


-- GET /metrics, kept here for configurations that name it so; the text
-- format is gateway.metrics.prometheus's.
function _M.serve()
    return require("gateway.metrics.prometheus").serve()
end


return _M
