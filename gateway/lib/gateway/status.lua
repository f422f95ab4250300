-- What the operator sees of the Lua runtime, shared by the workers
-- through the shared dict "gateway_status" (when it is configured):
-- routes whose latest version does not compile, modules kept because
-- they use the FFI, counters, and the privileged agent's state.
--
--   location = /status {
--       content_by_lua_block { require("gateway.status").serve() }
--   }

local cjson = require "cjson.safe"

local ngx = ngx
local shared = ngx.shared
local tostring = tostring
local ipairs = ipairs
local sub = string.sub

local _M = { _VERSION = "0.1" }


local FAILED = "failed:"
local PINNED = "pinned:"
local AGENT = "agent:"


local function dict()
    return shared.gateway_status
end


function _M.route_failed(name, version, err)
    local d = dict()
    if d then
        d:set(FAILED .. name, cjson.encode({ version = tostring(version),
                                             error = tostring(err) }))
    end
end


function _M.route_compiled(name)
    local d = dict()
    if d then
        d:incr("compiles", 1, 0)
        d:delete(FAILED .. name)
    end
end


-- a failed route whose script was deleted
function _M.route_gone(name)
    local d = dict()
    if d then
        d:delete(FAILED .. name)
    end
end


function _M.module_pinned(name, why)
    local d = dict()
    if d then
        d:set(PINNED .. name, why)
    end
end


function _M.module_reloaded()
    local d = dict()
    if d then
        d:incr("module_reloads", 1, 0)
    end
end


-- the privileged agent: a heartbeat, the last configuration test, the
-- last reload it asked for
function _M.agent_alive(at)
    local d = dict()
    if d then
        d:set("agent:alive_at", at)
    end
end


function _M.agent_test(ok, output, at)
    local d = dict()
    if d then
        d:set("agent:last_test", cjson.encode({ ok = ok, output = output,
                                                at = at }))
    end
end


function _M.agent_reloaded(at)
    local d = dict()
    if d then
        d:set("agent:last_reload_at", at)
    end
end


function _M.report()
    local report = {
        failed_routes = {},
        pinned_modules = {},
        compiles = 0,
        module_reloads = 0,
        agent = {},
    }

    local d = dict()
    if not d then
        return report
    end

    for _, key in ipairs(d:get_keys(0)) do
        local value = d:get(key)

        if value ~= nil then
            if sub(key, 1, #FAILED) == FAILED then
                report.failed_routes[sub(key, #FAILED + 1)] =
                    cjson.decode(value)

            elseif sub(key, 1, #PINNED) == PINNED then
                report.pinned_modules[sub(key, #PINNED + 1)] = value

            elseif key == "agent:last_test" then
                report.agent.last_test = cjson.decode(value)

            elseif sub(key, 1, #AGENT) == AGENT then
                report.agent[sub(key, #AGENT + 1)] = value

            else
                report[key] = value
            end
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
