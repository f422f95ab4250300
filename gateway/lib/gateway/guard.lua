-- The route guard as Lua sees it: the functions the C module exports for
-- the FFI (validators/ngx_http_route_guard.h), declared here once, and
-- its verdicts' codes and names.
--
--   local guard = require "gateway.guard"
--
--   local version = guard.script(r)          -- nil: no script accepted
--   local version, path = guard.script(r, true)
--   local result = guard.verdict(r)          -- nil: the guard did not run
--   local result, name = guard.verdict(r, true)
--   local size, mtime = guard.identity(r)
--   local generation = guard.modules_generation()
--   local ok, reason = guard.check_name(name)   -- the grammar alone
--
-- r is the request (resty.core.base's get_request()).  Nothing here
-- allocates unless asked for a string: the router and gateway.metrics
-- call these on every request.

local ffi = require "ffi"

local C = ffi.C
local ffi_new = ffi.new
local ffi_string = ffi.string
local ipairs = ipairs


ffi.cdef[[
int ngx_http_route_guard_ffi_script(void *r, const unsigned char **script,
    size_t *len, unsigned int *version);
int ngx_http_route_guard_ffi_verdict(void *r, const unsigned char **name,
    size_t *len);
int ngx_http_route_guard_ffi_identity(void *r, double *size, double *mtime);
unsigned int ngx_http_route_guard_modules_generation(void);

typedef struct {
    size_t  max_length;
    size_t  max_segments;
    size_t  max_segment_length;
} route_name_limits_t;

extern const route_name_limits_t  route_name_default_limits;

int route_name_check(const unsigned char *name, size_t len,
    const route_name_limits_t *limits, size_t *offset);
const char *route_name_reason(int rc);
]]


local route_guard_ffi_script = C.ngx_http_route_guard_ffi_script
local route_guard_ffi_verdict = C.ngx_http_route_guard_ffi_verdict
local route_guard_ffi_identity = C.ngx_http_route_guard_ffi_identity
local route_guard_modules_generation =
    C.ngx_http_route_guard_modules_generation


local _M = { _VERSION = "0.1" }


-- ngx_http_route_guard_result_e
_M.OK = 0
_M.GRAMMAR = 1
_M.MISSING = 2
_M.NOT_REGULAR = 3
_M.UNREADABLE = 4
_M.SYMLINK_ESCAPE = 5
_M.BYTECODE = 6
_M.MISMATCH = 7
_M.ERROR = 8

-- result -> its name, as $route_guard_result gives it
local verdict_names = {
    [0] = "ok",
    "grammar",
    "missing",
    "not_regular",
    "unreadable",
    "symlink_escape",
    "bytecode",
    "mismatch",
    "error",
}
_M.VERDICTS = verdict_names

-- the names of the refusals, in the order of their results: every
-- verdict but "ok"
local rejections = {}
for result = 1, #verdict_names do
    rejections[result] = verdict_names[result]
end
_M.REJECTIONS = rejections

-- name -> result, of the refusals only
local rejection_results = {}
for result, name in ipairs(rejections) do
    rejection_results[name] = result
end


local str_p = ffi_new("const unsigned char *[1]")
local len_p = ffi_new("size_t[1]")
local version_p = ffi_new("unsigned int[1]")
local size_p = ffi_new("double[1]")
local mtime_p = ffi_new("double[1]")


-- The script the guard accepted for r: its version, a number that moves
-- whenever the file may have changed (0 with route_guard_cache off, when
-- there are no versions), and with "path" true its path; nil when the
-- guard accepted no script.
function _M.script(r, path)
    if route_guard_ffi_script(r, str_p, len_p, version_p) ~= 0 then
        return nil
    end

    if path then
        return version_p[0], ffi_string(str_p[0], len_p[0])
    end

    return version_p[0]
end


-- The guard's verdict on r, one of the results above, and with "name"
-- true the route's name when the verdict is OK; nil when the guard did
-- not run for r.
function _M.verdict(r, name)
    local result = route_guard_ffi_verdict(r, str_p, len_p)

    if result < 0 then
        return nil
    end

    if name and result == 0 then
        return result, ffi_string(str_p[0], len_p[0])
    end

    return result
end


-- The size and modification time (seconds, fractional) the guard saw
-- when it last checked the accepted script; nil when it accepted none.
function _M.identity(r)
    if route_guard_ffi_identity(r, size_p, mtime_p) ~= 0 then
        return nil
    end

    return size_p[0], mtime_p[0]
end


-- A number that changes whenever anything changes in the modules tree
-- (route_guard_modules), as this worker has seen it; 0 when the tree is
-- not watched.  Only equality means something.
function _M.modules_generation()
    return route_guard_modules_generation()
end


-- Whether a route or module name (without ".lua") obeys the guard's
-- grammar with its default limits: true, or nil and the reason (the
-- grammar core's words: "bad byte", "leading dash", ...).
function _M.check_name(name)
    local rc = C.route_name_check(name, #name, C.route_name_default_limits,
                                  len_p)
    if rc == 0 then
        return true
    end
    return nil, ffi_string(C.route_name_reason(rc))
end


-- The result of the refusal "name", a $route_guard_result other than
-- "ok" (GRAMMAR ...); nil for anything else.
function _M.rejection_result(name)
    return rejection_results[name]
end


return _M
