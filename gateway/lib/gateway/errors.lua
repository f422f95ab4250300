-- The gateway's error responses: short JSON documents with a stable
-- "error" code and a generic message, never a path or an internal error.
-- README.md lists the codes.
--
-- The route guard's refusals and the errors nginx produces reach
-- serve() through error_page, which passes the guard's verdict along
-- (the redirect clears the guard's request context, not the URI built
-- before it):
--
--   error_page 400 403 404 405 413 414 494 500 501 502 503 504
--       /_gateway_error?tree=$gateway_tree&reason=$route_guard_result
--                      &route=$route_name;     (once, per server)
--
-- $gateway_tree (a map of $uri in nginx.conf) is empty outside the route
-- locations, where the guard never ran and reason is empty too.
--
--   location = /_gateway_error {
--       internal;
--       content_by_lua_block { require("gateway.errors").serve() }
--   }
--
-- The runtime answers its own errors with send() or exit().

local guard = require "gateway.guard"
local metrics = require "gateway.metrics"

local ngx = ngx
local var = ngx.var
local concat = table.concat
local pairs = pairs


local _M = { _VERSION = "0.1" }


-- code -> message
local MESSAGES = {
    invalid_route_name = "the route name is not valid",
    route_not_found = "no such route",
    route_unavailable = "the route cannot be served",
    route_error = "the route failed",
    budget_exceeded = "the script exceeded a budget",
    script_error = "the script failed",
    bad_request = "bad request",
    forbidden = "forbidden",
    not_found = "not found",
    method_not_allowed = "method not allowed",
    request_too_large = "request too large",
    uri_too_long = "URI too long",
    client_error = "the request cannot be served",
    internal_error = "internal error",
    not_implemented = "not implemented",
    unavailable = "service unavailable",
    server_error = "the server cannot serve the request",
}

_M.MESSAGES = MESSAGES

-- the route guard's refusals: its verdict decides the code, whichever
-- status the location maps it to
local BY_VERDICT = {
    [guard.GRAMMAR] = "invalid_route_name",
    [guard.MISSING] = "route_not_found",
    [guard.NOT_REGULAR] = "route_unavailable",
    [guard.UNREADABLE] = "route_unavailable",
    [guard.SYMLINK_ESCAPE] = "route_unavailable",
    [guard.BYTECODE] = "route_unavailable",
    [guard.MISMATCH] = "route_unavailable",
    [guard.ERROR] = "internal_error",
}

-- the same by the verdict's name, as error_page passes it along
local BY_REASON = {}
for result, code in pairs(BY_VERDICT) do
    BY_REASON[guard.VERDICTS[result]] = code
end

local OK = guard.VERDICTS[guard.OK]

-- a status a route's script (or the router, for it) ended with
local BY_ROUTE_STATUS = {
    [404] = "route_not_found",
    [500] = "route_error",
    [503] = "route_unavailable",
}

local BY_STATUS = {
    [400] = "bad_request",
    [403] = "forbidden",
    [404] = "not_found",
    [405] = "method_not_allowed",
    [413] = "request_too_large",
    [414] = "uri_too_long",
    [500] = "internal_error",
    [501] = "not_implemented",
    [503] = "unavailable",
}


local function code_of(status, reason)
    local code = BY_REASON[reason]

    if code == nil and reason == OK then
        code = BY_ROUTE_STATUS[status]
    end

    return code or BY_STATUS[status]
           or (status < 500 and "client_error" or "server_error")
end

_M.code_of = code_of


local function quote(s)
    -- codes, messages and budget names are plain ASCII words
    return '"' .. s .. '"'
end


-- Answers status with the document of "code"; "detail" is one more
-- string field, e.g. { "budget", "memory" }.
function _M.send(status, code, detail)
    local body = { '{"error":', quote(code), ',"message":',
                   quote(MESSAGES[code] or MESSAGES.server_error) }

    if detail then
        body[#body + 1] = ',' .. quote(detail[1]) .. ':' .. quote(detail[2])
    end

    body[#body + 1] = '}\n'
    body = concat(body)

    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #body
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(body)

    return ngx.exit(ngx.HTTP_OK)
end


-- For the runtime: the answer when a route's script cannot run.
function _M.exit(status)
    return _M.send(status, code_of(status, OK))
end


-- The error_page target: counts what the redirect took away from the
-- location's log phase, then answers.
function _M.serve()
    local status = ngx.status
    if status < 400 then
        status = 500
    end

    local tree = var.arg_tree
    local reason = var.arg_reason
    local route = var.arg_route

    -- no tree: a location of the configuration's own, not counted
    if tree and tree ~= "" then
        if reason and reason ~= OK then
            metrics.rejected(tree, reason)

        elseif reason == OK and route and route ~= "" then
            metrics.route_request(tree, route, status)
        end
    end

    return _M.send(status, code_of(status, reason))
end


return _M
