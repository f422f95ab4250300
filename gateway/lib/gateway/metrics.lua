-- The gateway's counters, kept in lua_shared_dict gateway_metrics so that
-- they add up across the workers and outlive a worker that dies (until
-- nginx itself stops), and GET /metrics, their Prometheus text form.
--
--   location /lua/ {
--       route_guard  ...;
--       content_by_lua_block { require("gateway.router").serve() }
--       log_by_lua_block     { require("gateway.metrics").log("routes") }
--   }
--
--   location = /metrics {            # the operator's listener only
--       content_by_lua_block { require("gateway.metrics").serve() }
--   }
--
-- Label values come from the configuration or from the route guard, never
-- from the client: a route is a label only once the guard found its
-- script, and its series go away when the script does (looked at on every
-- scrape); rejected names are counted by reason only.

local ffi = require "ffi"
local base = require "resty.core.base"

local C = ffi.C
local ffi_string = ffi.string
local get_request = base.get_request
local ngx = ngx
local shared = ngx.shared
local now = ngx.now
local req_start_time = ngx.req.start_time
local log = ngx.log
local WARN = ngx.WARN
local concat = table.concat
local sort = table.sort
local ipairs = ipairs
local pairs = pairs
local type = type
local tostring = tostring
local tonumber = tonumber
local floor = math.floor
local find = string.find
local sub = string.sub
local gsub = string.gsub
local format = string.format


ffi.cdef[[
int ngx_http_route_guard_ffi_script(void *r, const unsigned char **script,
    size_t *len, unsigned int *version);
int ngx_http_route_guard_ffi_verdict(void *r, const unsigned char **name,
    size_t *len);
int access(const char *path, int mode);
]]


local _M = { _VERSION = "0.1" }


-- the route guard's verdicts, indexed by ngx_http_route_guard_result_e + 1
local RESULTS = { "ok", "grammar", "missing", "not_regular", "unreadable",
                  "symlink_escape", "bytecode", "mismatch", "error" }
_M.RESULTS = RESULTS

local REASONS = {}      -- the rejections: every result but "ok"
for i = 2, #RESULTS do
    REASONS[RESULTS[i]] = true
end

-- upper bounds of the latency buckets, seconds; nginx's clock counts
-- milliseconds, so the first bucket holds the requests served within one
local BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                  1, 2.5, 5, 10 }
local NBUCKETS = #BUCKETS + 1       -- and +Inf
local LE = {}
for i = 1, #BUCKETS do
    LE[i] = tostring(BUCKETS[i])
end
LE[NBUCKETS] = "+Inf"

local CLASSES = { "1xx", "2xx", "3xx", "4xx", "5xx" }

-- gateway.sandbox's budgets, as it names them when one is exceeded
-- (pattern steps count as instructions)
_M.BUDGETS = { "instruction", "memory", "output", "time", "nesting" }

_M.RELOADS = { "route", "module", "config" }

local F_OK = 0

-- a worker's cache of the keys of each route (by name, and by version),
-- so that counting a request builds no string; emptied when it grows
-- past this many entries
local MAX_KEYED = 4096


local function dict()
    return shared.gateway_metrics
end


local full_warned = false

local function add(d, key, n)
    local _, err, forcible = d:incr(key, n, 0)

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
-- and the latency sum), not three.

local keyed = {}        -- tree -> name -> the route's keys
local by_version = {}   -- tree -> the guard's version -> the same keys
local nkeyed = 0


-- every key of the route "<tree> <name>": { id =, sum =, n = { class ->
-- { bucket -> key } } }
local function new_keys(id)
    local keys = { id = id, n = {}, sum = "duration_sum " .. id }

    for c = 0, #CLASSES do
        local n = {}
        for b = 1, NBUCKETS do
            n[b] = "n " .. id .. " " .. c .. " " .. b
        end
        keys.n[c] = n
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

    for c = 0, #CLASSES do
        for _, key in ipairs(route.n[c]) do
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


local function count(d, keys, status, elapsed)
    local class = floor(status / 100)
    if class < 1 or class > 5 then
        class = 0       -- no status (the client left first): latency only
    end

    add(d, keys.n[class][bucket(elapsed)], 1)
    add(d, keys.sum, elapsed)
end


-- Where a route's script is, so that the scrape can tell when it is gone:
-- recorded by the router at each compile, and by each worker the first
-- time it counts the route (for routes served without the router).
local function register(d, keys, script)
    keys.registered = true
    d:set("script " .. keys.id, script)
end


function _M.register(tree, name, script)
    local d = dict()
    if d then
        register(d, route_keys(tree, name), script)
    end
end


-- One request of a route the guard accepted: by status class, and its
-- latency.  "script" may be nil when the caller does not know it.
function _M.route_request(tree, name, script, status, elapsed)
    local d = dict()
    if not d then
        return
    end

    local keys = route_keys(tree, name)

    if script and not keys.registered then
        register(d, keys, script)
    end

    count(d, keys, status, elapsed)
end


local function bump(key)
    local d = dict()
    if d then
        add(d, key, 1)
    end
end


function _M.rejected(tree, reason)
    if REASONS[reason] then
        bump("rejections " .. tree .. " " .. reason)
    end
end


function _M.compiled(ok)
    bump(ok and "compiles" or "compile_failures")
end


-- kind: "route" (a worker compiled a changed script), "module" (a changed
-- module was unloaded), "config" (the agent reloaded nginx)
function _M.reloaded(kind)
    bump("reloads " .. kind)
end


function _M.budget_hit(budget)
    bump("budget_hits " .. budget)
end


local name_p = ffi.new("const unsigned char *[1]")
local len_p = ffi.new("size_t[1]")
local script_p = ffi.new("const unsigned char *[1]")
local script_len_p = ffi.new("size_t[1]")
local version_p = ffi.new("unsigned int[1]")


-- From log_by_lua in a location with route_guard: counts the request
-- under its route when the guard accepted one, under the rejection's
-- reason otherwise.  "tree" labels the location's routes root.
function _M.log(tree)
    local d = dict()
    if not d then
        return
    end

    local r = get_request()
    local result = C.ngx_http_route_guard_ffi_verdict(r, name_p, len_p)

    if result < 0 then
        return
    end

    if result > 0 then
        return _M.rejected(tree, RESULTS[result + 1])
    end

    -- the route's keys by the guard's version number: no string is made
    -- for a request of a route this worker has counted before
    C.ngx_http_route_guard_ffi_script(r, script_p, script_len_p, version_p)

    local version = version_p[0]
    local versions = by_version[tree]
    local keys = versions and versions[version]

    if keys == nil then
        keys = route_keys(tree, ffi_string(name_p[0], len_p[0]))

        if not keys.registered then
            register(d, keys, ffi_string(script_p[0], script_len_p[0]))
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

    return count(d, keys, ngx.status, now() - req_start_time())
end


-- Drops the series of routes whose script is gone: what a deleted route
-- leaves behind does not grow the output forever.
function _M.prune()
    local d = dict()
    if not d then
        return
    end

    for _, key in ipairs(d:get_keys(0)) do
        if sub(key, 1, 7) == "script " then
            local script = d:get(key)

            if script and C.access(script, F_OK) ~= 0 then
                local id = sub(key, 8)

                for _, k in ipairs(all_route_keys(id)) do
                    d:delete(k)
                end

                -- this worker registers it again if it comes back
                forget_keys()
            end
        end
    end
end


-- Prometheus text exposition format, version 0.0.4.

local function label_value(s)
    return (gsub(s, '[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"',
                                 ["\n"] = "\\n" }))
end


local function number(v)
    if v == floor(v) and v < 2^53 and v > -2^53 then
        return format("%d", v)
    end
    return format("%.15g", v)
end


local function header(out, name, kind, help)
    out[#out + 1] = "# HELP " .. name .. " " .. help .. "\n"
    out[#out + 1] = "# TYPE " .. name .. " " .. kind .. "\n"
end


local function sample(out, name, labels, v)
    out[#out + 1] = name .. (labels and "{" .. labels .. "}" or "") .. " "
                    .. number(v) .. "\n"
end


-- splits "a b c" into its words
local function words(s)
    local t = {}
    local i = 1

    while true do
        local j = find(s, " ", i, true)
        if not j then
            t[#t + 1] = sub(s, i)
            return t
        end
        t[#t + 1] = sub(s, i, j - 1)
        i = j + 1
    end
end


local function route_labels(tree, name)
    return 'tree="' .. label_value(tree) .. '",route="' .. label_value(name)
           .. '"'
end


-- Everything in the dict, grouped: routes[id] = { tree, name, requests =
-- { class -> n }, duration = { bucket -> n }, sum }, and the plain
-- counters by key.
local function collect(d)
    local routes = {}
    local counters = {}

    local function route(tree, name)
        local id = tree .. " " .. name
        local r = routes[id]
        if not r then
            r = { tree = tree, name = name, requests = {}, duration = {},
                  sum = 0 }
            routes[id] = r
        end
        return r
    end

    for _, key in ipairs(d:get_keys(0)) do
        local v = d:get(key)

        if type(v) == "number" then
            local w = words(key)
            local what = w[1]

            if what == "n" and #w == 5 then
                local r = route(w[2], w[3])
                local c, b = tonumber(w[4]), tonumber(w[5])
                r.requests[c] = (r.requests[c] or 0) + v
                r.duration[b] = (r.duration[b] or 0) + v

            elseif what == "duration_sum" and #w == 3 then
                route(w[2], w[3]).sum = v

            else
                counters[key] = v
            end
        end
    end

    local list = {}
    for _, r in pairs(routes) do
        list[#list + 1] = r
    end

    sort(list, function(a, b)
        if a.tree ~= b.tree then
            return a.tree < b.tree
        end
        return a.name < b.name
    end)

    return list, counters
end


local function render_routes(out, routes)
    header(out, "gateway_requests_total", "counter",
           "Requests answered by a route the guard accepted, by status "
           .. "class.")

    for _, r in ipairs(routes) do
        local labels = route_labels(r.tree, r.name)
        for i = 1, #CLASSES do
            local n = r.requests[i]
            if n then
                sample(out, "gateway_requests_total",
                       labels .. ',class="' .. CLASSES[i] .. '"', n)
            end
        end
    end

    header(out, "gateway_request_duration_seconds", "histogram",
           "Time from the request's first byte to its log phase, per "
           .. "route (millisecond clock).")

    for _, r in ipairs(routes) do
        local labels = route_labels(r.tree, r.name)
        local n = 0

        for i = 1, NBUCKETS do
            n = n + (r.duration[i] or 0)
            local le = LE[i]
            sample(out, "gateway_request_duration_seconds_bucket",
                   labels .. ',le="' .. le .. '"', n)
        end

        sample(out, "gateway_request_duration_seconds_sum", labels, r.sum)
        sample(out, "gateway_request_duration_seconds_count", labels, n)
    end
end


local function render_counters(out, counters, trees)
    header(out, "gateway_rejections_total", "counter",
           "Requests the route guard refused, by reason.")

    for _, tree in ipairs(trees) do
        for i = 2, #RESULTS do
            local reason = RESULTS[i]
            sample(out, "gateway_rejections_total",
                   'tree="' .. label_value(tree) .. '",reason="' .. reason
                   .. '"', counters["rejections " .. tree .. " " .. reason]
                           or 0)
        end
    end

    header(out, "gateway_compiles_total", "counter",
           "Route script versions compiled, summed over the workers (each "
           .. "worker compiles each version it serves).")
    sample(out, "gateway_compiles_total", nil, counters.compiles or 0)

    header(out, "gateway_compile_failures_total", "counter",
           "Route script versions that did not compile, summed over the "
           .. "workers.")
    sample(out, "gateway_compile_failures_total", nil,
           counters.compile_failures or 0)

    header(out, "gateway_hot_reloads_total", "counter",
           "Changes picked up without a restart: a worker compiling a "
           .. "changed route, a changed module unloaded, a configuration "
           .. "reload by the agent.")
    for _, kind in ipairs(_M.RELOADS) do
        sample(out, "gateway_hot_reloads_total", 'kind="' .. kind .. '"',
               counters["reloads " .. kind] or 0)
    end

    header(out, "gateway_sandbox_budget_hits_total", "counter",
           "Sandboxed requests stopped by a budget, by budget.")
    for _, budget in ipairs(_M.BUDGETS) do
        sample(out, "gateway_sandbox_budget_hits_total",
               'budget="' .. budget .. '"',
               counters["budget_hits " .. budget] or 0)
    end
end


-- The trees that have rejections, routes or are in "trees" (the ones
-- always shown, so that a counter exists before its first increment).
local function trees_of(routes, counters, always)
    local seen, list = {}, {}

    local function add_tree(t)
        if not seen[t] then
            seen[t] = true
            list[#list + 1] = t
        end
    end

    for _, t in ipairs(always) do
        add_tree(t)
    end

    for _, r in ipairs(routes) do
        add_tree(r.tree)
    end

    for key in pairs(counters) do
        local tree = key:match("^rejections (%S+) ")
        if tree then
            add_tree(tree)
        end
    end

    sort(list)
    return list
end


function _M.render()
    local d = dict()
    if not d then
        return "# lua_shared_dict gateway_metrics is not configured\n"
    end

    _M.prune()

    local routes, counters = collect(d)
    local out = {}

    render_routes(out, routes)
    render_counters(out, counters,
                    trees_of(routes, counters, { "routes", "sandbox" }))

    return concat(out)
end


function _M.serve()
    local body = _M.render()

    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(body)
end


return _M
