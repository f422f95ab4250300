-- The watchdog's accounting, in the privileged agent.  The watchdog itself
-- is C (gateway/watchdog/): each worker's event loop beats in a shared
-- slot, and the agent kills (SIGKILL) a worker whose loop has not turned
-- for longer than "gateway_watchdog" (10 s), logging it once; the master
-- starts another.  This module counts those kills in /metrics
-- (gateway_worker_stuck_total) and shows the last one in /status.
--
--   init_worker_by_lua_block { require("gateway.watchdog").start() }
--
-- It does nothing outside the agent.  Kills are counted once whichever
-- agent asks first (a new one after kill -9 or a reload included).

local ffi = require "ffi"
local process = require "ngx.process"
local metrics = require "gateway.metrics"
local status = require "gateway.status"

local C = ffi.C
local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local ffi_string = ffi.string
local timer_every = ngx.timer.every


-- the C side's ngx_http_gateway_watchdog_report_t
ffi.cdef[[
typedef struct {
    double         at;
    double         stuck;
    double         request;
    int            pid;
    int            route_len;
    int            location_len;
    unsigned char  route[80];
    unsigned char  location[56];
} ngx_http_gateway_watchdog_report_t;

int ngx_http_gateway_watchdog_ffi_take(
    ngx_http_gateway_watchdog_report_t *last);
]]


local _M = { _VERSION = "0.1" }


_M.INTERVAL = 1     -- seconds between looks at the kills


local last = ffi.new("ngx_http_gateway_watchdog_report_t")


local function report(premature)
    if premature then
        return
    end

    local n = C.ngx_http_gateway_watchdog_ffi_take(last)
    if n <= 0 then
        return
    end

    metrics.worker_stuck(n)

    status.worker_stuck({
        pid = last.pid,
        route = last.route_len > 0
                and ffi_string(last.route, last.route_len) or nil,
        location = ffi_string(last.location, last.location_len),
        stuck = last.stuck,
        request_age = last.request >= 0 and last.request or nil,
        killed_at = last.at,
    })
end


function _M.start()
    if process.type() ~= "privileged agent" then
        return
    end

    local ok, err = timer_every(_M.INTERVAL, report)
    if not ok then
        log(ERR, "gateway watchdog: cannot count the kills: ", err)
    end
end


return _M
