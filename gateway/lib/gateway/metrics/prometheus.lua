-- GET /metrics: gateway.metrics' counters in the Prometheus text
-- exposition format, version 0.0.4.
--
--   location = /metrics {            # the operator's listener only
--       content_by_lua_block {
--           require("gateway.metrics.prometheus").serve()
--       }
--   }

local metrics = require "gateway.metrics"
local guard = require "gateway.guard"
local status = require "gateway.status"

local ngx = ngx
local concat = table.concat
local sort = table.sort
local ipairs = ipairs
local pairs = pairs
local floor = math.floor
local gsub = string.gsub
local format = string.format


local _M = { _VERSION = "0.1" }


-- the trees shown even before anything was counted in them
local TREES = { "routes", "sandbox" }

local CLASSES = { "1xx", "2xx", "3xx", "4xx", "5xx" }

-- the buckets' "le" labels, the last one above every bound: decimals
-- ("0.00005", "2.5"), no exponent
local LE = {}
for i, bound in ipairs(metrics.BUCKETS) do
    LE[i] = (gsub(gsub(format("%.6f", bound), "0+$", ""), "%.$", ""))
end
LE[#LE + 1] = "+Inf"


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


local function route_labels(tree, name)
    return 'tree="' .. label_value(tree) .. '",route="' .. label_value(name)
           .. '"'
end


local function render_routes(out, routes)
    header(out, "gateway_requests_total", "counter",
           "Requests answered by a route the guard accepted, by status "
           .. "class.")

    for _, route in ipairs(routes) do
        local labels = route_labels(route.tree, route.name)
        for class = 1, #CLASSES do
            local n = route.requests[class]
            if n then
                sample(out, "gateway_requests_total",
                       labels .. ',class="' .. CLASSES[class] .. '"', n)
            end
        end
    end

    header(out, "gateway_request_duration_seconds", "histogram",
           "Time from the request's first byte to its log phase, per "
           .. "route (microsecond clock).")

    for _, route in ipairs(routes) do
        local labels = route_labels(route.tree, route.name)
        local n = 0

        for b = 1, #LE do
            n = n + (route.duration[b] or 0)
            sample(out, "gateway_request_duration_seconds_bucket",
                   labels .. ',le="' .. LE[b] .. '"', n)
        end

        sample(out, "gateway_request_duration_seconds_sum", labels,
               route.sum)
        sample(out, "gateway_request_duration_seconds_count", labels, n)
    end
end


local function render_counters(out, counters, trees)
    header(out, "gateway_rejections_total", "counter",
           "Requests the route guard refused, by reason.")

    for _, tree in ipairs(trees) do
        local reasons = counters.rejections[tree] or {}
        for _, reason in ipairs(guard.REJECTIONS) do
            sample(out, "gateway_rejections_total",
                   'tree="' .. label_value(tree) .. '",reason="' .. reason
                   .. '"', reasons[reason] or 0)
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
    for _, kind in ipairs(metrics.RELOADS) do
        sample(out, "gateway_hot_reloads_total", 'kind="' .. kind .. '"',
               counters.reloads[kind] or 0)
    end

    header(out, "gateway_worker_stuck_total", "counter",
           "Workers whose event loop did not turn within the watchdog's "
           .. "limit, killed by the agent and replaced by the master.")
    sample(out, "gateway_worker_stuck_total", nil,
           counters.worker_stuck or 0)

    header(out, "gateway_sandbox_budget_hits_total", "counter",
           "Sandboxed requests stopped by a budget, by budget.")
    for _, budget in ipairs(metrics.BUDGETS) do
        sample(out, "gateway_sandbox_budget_hits_total",
               'budget="' .. budget .. '"',
               counters.budget_hits[budget] or 0)
    end
end


-- why the fleet refuses a key (gateway.fleet)
local FLEET_REFUSALS = { "tree", "name", "size", "bytecode", "compile",
                         "write" }

-- the fleet's series, from the state the agent keeps in gateway.status;
-- none on a node without a fleet
local function render_fleet(out)
    local fleet = status.fleet_report()
    if not fleet then
        return
    end

    header(out, "gateway_fleet_revision", "gauge",
           "The etcd revision this node applied last.")
    sample(out, "gateway_fleet_revision", nil, fleet.revision or 0)

    header(out, "gateway_fleet_connected", "gauge",
           "1 while the agent follows etcd, 0 while it cannot reach it.")
    sample(out, "gateway_fleet_connected", nil, fleet.connected and 1 or 0)

    header(out, "gateway_fleet_applied_total", "counter",
           "Files written or deleted from etcd's changes.")
    sample(out, "gateway_fleet_applied_total", nil, fleet.applied or 0)

    header(out, "gateway_fleet_refused_total", "counter",
           "Keys from etcd not written, by reason.")
    local refused = fleet.refused or {}
    for _, reason in ipairs(FLEET_REFUSALS) do
        sample(out, "gateway_fleet_refused_total",
               'reason="' .. reason .. '"', refused[reason] or 0)
    end

    header(out, "gateway_fleet_resyncs_total", "counter",
           "Full reads of the fleet's prefix (first start, compaction, "
           .. "another cluster).")
    sample(out, "gateway_fleet_resyncs_total", nil, fleet.resyncs or 0)
end


-- The trees that have rejections, routes or are in TREES, sorted.
local function trees_of(routes, counters)
    local seen, list = {}, {}

    local function add_tree(tree)
        if not seen[tree] then
            seen[tree] = true
            list[#list + 1] = tree
        end
    end

    for _, tree in ipairs(TREES) do
        add_tree(tree)
    end

    for _, route in ipairs(routes) do
        add_tree(route.tree)
    end

    for tree in pairs(counters.rejections) do
        add_tree(tree)
    end

    sort(list)
    return list
end


-- The text of GET /metrics.
function _M.render()
    metrics.prune()

    local routes, counters = metrics.collect()
    if routes == nil then
        return "# lua_shared_dict gateway_metrics is not configured\n"
    end

    local out = {}

    render_routes(out, routes)
    render_counters(out, counters, trees_of(routes, counters))
    render_fleet(out)

    return concat(out)
end


function _M.serve()
    local body = _M.render()

    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(body)
end


return _M
