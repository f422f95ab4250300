-- What the operator sees of the Lua runtime, shared by the workers
-- through the shared dict "gateway_status" (when it is configured): the
-- routes the workers compiled, with their files' identity and the version
-- each worker runs, routes whose latest version does not compile, sandbox
-- budget hits by route, modules kept because they use the FFI, the
-- privileged agent's state (with the last worker its watchdog killed)
-- and the fleet's (gateway.fleet, in the agent).  The counts it shows
-- besides (compiles, module reloads, budget hits by budget, workers
-- stuck) are gateway.metrics', read from there.
--
--   location = /status {
--       content_by_lua_block { require("gateway.status").serve() }
--   }

local ffi = require "ffi"
local cjson = require "cjson.safe"
local metrics = require "gateway.metrics"

local C = ffi.C
local ngx = ngx
local shared = ngx.shared
local worker_pid = ngx.worker.pid
local sha1_bin = ngx.sha1_bin
local tostring = tostring
local tonumber = tonumber
local type = type
local ipairs = ipairs
local pairs = pairs
local sub = string.sub
local byte = string.byte
local format = string.format
local gsub = string.gsub
local match = string.match


ffi.cdef[[
int kill(int pid, int sig);
int access(const char *path, int mode);
]]

local _M = { _VERSION = "0.2" }


local PINNED = "pinned:"
local AGENT = "agent:"
local FLEET = "fleet"       -- the fleet's state, JSON
local ROUTE = "route:"      -- "route:<tree> <name>": the file, JSON
local WORKER = "worker:"    -- "worker:<tree> <name> <pid>": its version
local BUDGET = "budget:"    -- "budget:<tree> <name> <budget>": hits

local F_OK = 0
local ESRCH = 3


local function status_dict()
    return shared.gateway_status
end


local function hex(s)
    return (gsub(s, ".", function(c) return format("%02x", byte(c)) end))
end


-- A worker compiled, or failed to compile, a version of a route.  "file"
-- is what it read: { script =, size =, mtime =, source = } (source nil
-- when it could not be read); "serving" the source of the chunk the
-- worker runs now, nil when none.
function _M.route_version(tree, name, version, file, serving, err)
    local dict = status_dict()
    if not dict then
        return
    end

    local id = tree .. " " .. name
    local now = ngx.now()

    dict:set(ROUTE .. id, cjson.encode({
        script = file.script,
        size = file.source and #file.source or file.size,
        mtime = file.mtime,
        sha1 = file.source and hex(sha1_bin(file.source)) or nil,
        version_at = now,
        error = err and tostring(err) or nil,
        failed_version = err and version or nil,
    }))

    dict:set(WORKER .. id .. " " .. worker_pid(), cjson.encode({
        version = version,
        serving_sha1 = serving and hex(sha1_bin(serving)) or nil,
    }))
end


-- A sandboxed route stopped by a budget (the hits by budget are counted
-- by gateway.metrics).
function _M.budget_hit(tree, name, budget)
    local dict = status_dict()
    if dict then
        dict:incr(BUDGET .. tree .. " " .. name .. " " .. budget, 1, 0)
    end
end


function _M.module_pinned(name, why)
    local dict = status_dict()
    if dict then
        dict:set(PINNED .. name, why)
    end
end


-- the privileged agent: a heartbeat, the last configuration test, the
-- last reload it asked for
function _M.agent_alive(at)
    local dict = status_dict()
    if dict then
        dict:set(AGENT .. "alive_at", at)
    end
end


function _M.agent_test(ok, output, at)
    local dict = status_dict()
    if dict then
        dict:set(AGENT .. "last_test",
                 cjson.encode({ ok = ok, output = output, at = at }))
    end
end


-- the last worker the agent's watchdog killed (gateway.watchdog):
-- { pid =, route =, location =, stuck =, request_age =, killed_at = }
function _M.worker_stuck(info)
    local dict = status_dict()
    if dict then
        dict:set(AGENT .. "last_stuck", cjson.encode(info))
    end
end


function _M.agent_reloaded(at)
    local dict = status_dict()
    if dict then
        dict:set(AGENT .. "last_reload_at", at)
    end
end


-- the fleet's state as gateway.fleet keeps it (a table: see "fleet" in
-- README.md's /status), and the last one stored
function _M.fleet(state)
    local dict = status_dict()
    if dict then
        dict:set(FLEET, cjson.encode(state))
    end
end


function _M.fleet_report()
    local dict = status_dict()
    local state = dict and cjson.decode(dict:get(FLEET) or "")
    return type(state) == "table" and state or nil
end


local function alive(pid)
    return C.kill(pid, 0) == 0 or ffi.errno() ~= ESRCH
end


-- splits "<tree> <name>[ <more>]"
local function route_id(s)
    return match(s, "^(%S+) (%S+) ?(.*)$")
end


-- One key of the dict that is not a route's, into the report.
local function add_key(report, routes, dict, key, value)
    if sub(key, 1, #WORKER) == WORKER then
        local tree, name, pid = route_id(sub(key, #WORKER + 1))
        local route = routes[tree .. " " .. name]

        if route and alive(tonumber(pid)) then
            route.workers[pid] = cjson.decode(value)
        else
            dict:delete(key)
        end

    elseif sub(key, 1, #BUDGET) == BUDGET then
        local tree, name, budget = route_id(sub(key, #BUDGET + 1))
        local route = routes[tree .. " " .. name]

        if route then
            route.budget_hits = route.budget_hits or {}
            route.budget_hits[budget] = value
        else
            dict:delete(key)
        end

    elseif sub(key, 1, #PINNED) == PINNED then
        report.pinned_modules[sub(key, #PINNED + 1)] = value

    elseif key == FLEET then
        report.fleet = cjson.decode(value)

    elseif key == AGENT .. "last_test" or key == AGENT .. "last_stuck" then
        report.agent[sub(key, #AGENT + 1)] = cjson.decode(value)

    elseif sub(key, 1, #AGENT) == AGENT then
        report.agent[sub(key, #AGENT + 1)] = value
    end
end


-- The report of GET /status.  Routes whose script is gone and workers
-- that exited are dropped from the dict on the way.
function _M.report()
    local report = {
        routes = {},
        failed_routes = {},
        sandbox_budget_hits = {},
        pinned_modules = {},
        compiles = metrics.get("compiles") or 0,
        module_reloads = metrics.get("reloads", "module") or 0,
        worker_stuck = metrics.get("worker_stuck") or 0,
        agent = {},
    }

    for _, budget in ipairs(metrics.BUDGETS) do
        report.sandbox_budget_hits[budget] = metrics.get("budget_hits",
                                                         budget)
    end

    local dict = status_dict()
    if not dict then
        return report
    end

    local keys = dict:get_keys(0)
    local routes = {}       -- id -> the route's report, nil when gone

    for _, key in ipairs(keys) do
        if sub(key, 1, #ROUTE) == ROUTE then
            local route = cjson.decode(dict:get(key) or "null")

            if route and route.script
               and C.access(route.script, F_OK) == 0
            then
                route.workers = {}
                routes[sub(key, #ROUTE + 1)] = route
            else
                dict:delete(key)
            end
        end
    end

    for _, key in ipairs(keys) do
        local value = dict:get(key)

        if value ~= nil and sub(key, 1, #ROUTE) ~= ROUTE then
            add_key(report, routes, dict, key, value)
        end
    end

    for id, route in pairs(routes) do
        local tree, name = route_id(id)

        report.routes[tree] = report.routes[tree] or {}
        report.routes[tree][name] = route

        if route.error then
            report.failed_routes[tree == "routes" and name
                                 or tree .. ":" .. name] =
                { error = route.error, version = route.failed_version }
        end
    end

    return report
end


function _M.serve()
    local report = _M.report()

    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(cjson.encode(report))
end


return _M
