-- The gateway's counters.  The requests of the routes and the route
-- guard's refusals are counted in C, in the log phase of the locations
-- with "route_metrics <tree>", into the shared zone of
-- route_metrics_zone (gateway/metrics/ngx_http_route_metrics_module.c);
-- the rest (compiles, reloads, budget hits) here, in lua_shared_dict
-- gateway_metrics.  Both add up across the workers and outlive a worker
-- that dies (until nginx itself stops).  This is the one place counts
-- are read: GET /metrics renders them (gateway.metrics.prometheus), GET
-- /status reads some of them (gateway.status).
--
--   location /lua/ {
--       route_guard    ...;
--       route_metrics  routes;
--       content_by_lua_block { require("gateway.router").serve() }
--   }
--
-- Label values come from the configuration or from the route guard, never
-- from the client: a route is a label only once the guard found its
-- script, and its series go away when the script does (looked at on every
-- scrape); rejected names are counted by reason only.
--
-- A counter of its own (no label, or labels from a fixed list) is a key
-- of the dict: bump(counter_key("what", label)) to count, a case in
-- collect() to read, a few lines in gateway.metrics.prometheus to show.

local ffi = require "ffi"
local base = require "resty.core.base"
local guard = require "gateway.guard"

local C = ffi.C
local ffi_new = ffi.new
local ffi_cast = ffi.cast
local ffi_string = ffi.string
local ffi_sizeof = ffi.sizeof
local get_request = base.get_request
local rejection_result = guard.rejection_result
local ngx = ngx
local shared = ngx.shared
local log = ngx.log
local WARN = ngx.WARN
local error = error
local sort = table.sort
local ipairs = ipairs
local type = type
local tonumber = tonumber
local floor = math.floor
local find = string.find
local sub = string.sub
local format = string.format


ffi.cdef[[
int access(const char *path, int mode);

int ngx_http_route_metrics_ffi_bounds(const uint64_t **bounds);
int ngx_http_route_metrics_ffi_log(void *r, const char *tree, size_t len);
int ngx_http_route_metrics_ffi_count(void *r, const char *tree,
    size_t tree_len, const char *name, size_t name_len, int status);
int ngx_http_route_metrics_ffi_reject(const char *tree, size_t len,
    int result);
int ngx_http_route_metrics_ffi_register(const char *tree, size_t tree_len,
    const char *name, size_t name_len, const char *script,
    size_t script_len);
int ngx_http_route_metrics_ffi_delete(const char *tree, size_t tree_len,
    const char *name, size_t name_len);
int ngx_http_route_metrics_ffi_snapshot(unsigned char *buf, size_t size,
    size_t *used);
]]


local _M = { _VERSION = "0.3" }


local NGX_ERROR = -1
local NGX_AGAIN = -2
local NGX_DECLINED = -5

-- The latency buckets' upper bounds, seconds, as the C side counts them
-- (in microseconds): 50 us to 10 s, and +Inf above them.
local BUCKETS = {}
local NBUCKETS
do
    local bounds_p = ffi_new("const uint64_t *[1]")
    local n = C.ngx_http_route_metrics_ffi_bounds(bounds_p)
    for i = 1, n do
        BUCKETS[i] = tonumber(bounds_p[0][i - 1]) / 1e6
    end
    NBUCKETS = n + 1
end
_M.BUCKETS = BUCKETS

-- status classes 1xx to 5xx are counted as 1 to 5, and 0 for a request
-- without a status (the client left first): latency only
local NCLASSES = 5

-- A record of the zone as a scrape copies it: the values of a route (the
-- latency sum in microseconds, by class 0 to 5, by bucket) or of a
-- tree's refusals (by the guard's result; an empty name), then the tree,
-- " ", the name and the script; laid out as the C side lays it out.
local SUM = 0
local CLASS0 = 1
local BUCKET0 = CLASS0 + NCLASSES + 1
local NVALUES = BUCKET0 + NBUCKETS

ffi.cdef(format([[
typedef struct {
    uint64_t  values[%d];
    uint32_t  size;
    uint16_t  tree_len;
    uint16_t  name_len;
    uint16_t  script_len;
} ngx_http_route_metrics_record_t;
]], NVALUES))

local record_pt = ffi.typeof("const ngx_http_route_metrics_record_t *")
local RECORD_SIZE = ffi_sizeof("ngx_http_route_metrics_record_t")

-- gateway.sandbox's budgets, as it names them when one is exceeded
-- (pattern steps count as instructions)
_M.BUDGETS = { "instruction", "memory", "output", "time", "nesting" }

_M.RELOADS = { "route", "module", "config" }

local F_OK = 0


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


-- The dict's keys: "<what>" or "<what> <label> [<label>]".
local function counter_key(what, label, label2)
    if label2 then
        return what .. " " .. label .. " " .. label2
    end

    if label then
        return what .. " " .. label
    end

    return what
end


local function bump(key)
    local dict = counters_dict()
    if dict then
        add(dict, key, 1)
    end
end


local function check_tree(rc, fn)
    if rc == NGX_ERROR then
        error("bad argument #1 to '" .. fn .. "' (a tree is 1 to 64 of "
              .. "[a-z0-9_], a name 1 to 1024 bytes)", 3)
    end
end


-- Where a route's script is, so that the scrape can tell when it is gone:
-- recorded by the router at each compile (the log phase records it too).
function _M.register(tree, name, script)
    check_tree(C.ngx_http_route_metrics_ffi_register(tree, #tree, name,
                                                     #name, script,
                                                     #script),
               "register")
end


-- The current request, answered with "status", under the route "name"
-- of "tree", which the guard accepted: for a request whose log phase is
-- in another location than the route's (gateway.errors, the error_page).
function _M.route_request(tree, name, status)
    check_tree(C.ngx_http_route_metrics_ffi_count(get_request(), tree,
                                                  #tree, name, #name,
                                                  status),
               "route_request")
end


-- reason: one of the guard's refusals (anything else is not counted)
function _M.rejected(tree, reason)
    local result = rejection_result(reason)
    if result then
        check_tree(C.ngx_http_route_metrics_ffi_reject(tree, #tree, result),
                   "rejected")
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


-- From log_by_lua in a location with route_guard, for configurations
-- written before route_metrics: counts the request as "route_metrics
-- <tree>" would (with nginx's millisecond clock for its start).
function _M.log(tree)
    check_tree(C.ngx_http_route_metrics_ffi_log(get_request(), tree, #tree),
               "log")
end


-- Reading.

local used_p = ffi_new("size_t[1]")
local snapshot_buf = nil        -- uint64_t[], for alignment
local snapshot_size = 0


-- The zone's records, copied out in one go: a list of { tree =, name =,
-- script =, values = { [0] = v, ... } } (name "" for a tree's refusals);
-- nil without the zone.
local function records()
    while true do
        local n = C.ngx_http_route_metrics_ffi_snapshot(
                      ffi_cast("unsigned char *", snapshot_buf),
                      snapshot_size, used_p)

        if n == NGX_DECLINED then
            return nil
        end

        if n ~= NGX_AGAIN then
            local list = {}
            local p = ffi_cast("const unsigned char *", snapshot_buf)

            for i = 1, n do
                local rec = ffi_cast(record_pt, p)
                local tree_len, name_len = rec.tree_len, rec.name_len
                local strings = p + RECORD_SIZE
                local values = {}

                for v = 0, NVALUES - 1 do
                    values[v] = tonumber(rec.values[v])
                end

                list[i] = {
                    tree = ffi_string(strings, tree_len),
                    name = ffi_string(strings + tree_len + 1, name_len),
                    script = ffi_string(strings + tree_len + 1 + name_len,
                                        rec.script_len),
                    values = values,
                }

                p = p + rec.size
            end

            return list
        end

        -- room for some more records made meanwhile
        local words = floor(tonumber(used_p[0]) * 1.25 / 8) + 512
        snapshot_buf = ffi_new("uint64_t[?]", words)
        snapshot_size = words * 8
    end
end


-- A counter summed over the workers, nil before its first increment (or
-- without the dict, or the zone): ("compiles"), ("compile_failures"),
-- ("reloads", kind), ("budget_hits", budget), ("rejections", tree,
-- reason), ("worker_stuck").
function _M.get(what, label, label2)
    if what == "rejections" then
        local result = rejection_result(label2)

        for _, rec in ipairs(result and records() or {}) do
            if rec.tree == label and rec.name == "" then
                local n = rec.values[result]
                return n > 0 and n or nil
            end
        end

        return nil
    end

    local dict = counters_dict()
    return dict and dict:get(counter_key(what, label, label2))
end


-- Drops the series of routes whose script is gone: what a deleted route
-- leaves behind does not grow the output forever.
function _M.prune()
    for _, rec in ipairs(records() or {}) do
        if rec.script ~= "" and C.access(rec.script, F_OK) ~= 0 then
            C.ngx_http_route_metrics_ffi_delete(rec.tree, #rec.tree,
                                                rec.name, #rec.name)
        end
    end
end


-- Everything counted, grouped, or nil without the dict or the zone:
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
    local list = records()
    if not dict or not list then
        return nil
    end

    local routes = {}
    local counters = { reloads = {}, budget_hits = {}, rejections = {} }

    for _, rec in ipairs(list) do
        local values = rec.values

        if rec.name == "" then
            local reasons = {}
            for result, reason in ipairs(guard.REJECTIONS) do
                if values[result] > 0 then
                    reasons[reason] = values[result]
                end
            end
            counters.rejections[rec.tree] = reasons

        else
            local entry = { tree = rec.tree, name = rec.name, requests = {},
                            duration = {}, sum = values[SUM] / 1e6 }

            for class = 0, NCLASSES do
                local n = values[CLASS0 + class]
                if n > 0 then
                    entry.requests[class] = n
                end
            end

            for b = 1, NBUCKETS do
                entry.duration[b] = values[BUCKET0 + b - 1]
            end

            routes[#routes + 1] = entry
        end
    end

    sort(routes, function(a, b)
        if a.tree ~= b.tree then
            return a.tree < b.tree
        end
        return a.name < b.name
    end)

    for _, key in ipairs(dict:get_keys(0)) do
        local v = dict:get(key)

        if type(v) == "number" then
            local what, label = key, nil
            local sp = find(key, " ", 1, true)
            if sp then
                what, label = sub(key, 1, sp - 1), sub(key, sp + 1)
            end

            if (what == "reloads" or what == "budget_hits") and label then
                counters[what][label] = v

            elseif (what == "compiles" or what == "compile_failures"
                    or what == "worker_stuck")
                   and not label
            then
                counters[what] = v
            end
        end
    end

    return routes, counters
end


-- GET /metrics, kept here for configurations that name it so; the text
-- format is gateway.metrics.prometheus's.
function _M.serve()
    return require("gateway.metrics.prometheus").serve()
end


return _M
