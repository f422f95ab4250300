-- Runs the route script the route guard accepted, compiled once per
-- version of its file.
--
-- The guard gives each request the confined script path ($route_script)
-- and a version ($route_version) that changes exactly when the file may
-- have changed, as inotify told the worker before it read the request.
-- So a request for an unchanged route costs a table lookup, and the first
-- request after an edit compiles the new file.  A file that does not
-- compile leaves the last good version serving.
--
--   init_by_lua_block   { require("gateway.router").init{ modules = dir } }
--   content_by_lua_block { require("gateway.router").serve() }

local lrucache = require "resty.lrucache"
local modules = require "gateway.modules"
local status = require "gateway.status"

local loadfile = loadfile
local ngx = ngx
local var = ngx.var
local log = ngx.log
local exit = ngx.exit
local ERR = ngx.ERR
local INFO = ngx.INFO
local HTTP_INTERNAL_SERVER_ERROR = ngx.HTTP_INTERNAL_SERVER_ERROR


local _M = { _VERSION = "0.1" }


-- script path -> { version = v, fn = chunk or nil, bad = v or nil }.
-- Bounded: a deleted route is never asked for again and ages out.
local chunks

local DEFAULT_MAX_ROUTES = 4096


function _M.init(opts)
    opts = opts or {}

    local err
    chunks, err = lrucache.new(opts.max_routes or DEFAULT_MAX_ROUTES)
    if not chunks then
        error("gateway.router: cannot create the chunk cache: " .. err, 2)
    end

    modules.init(opts.modules)
end


-- Compiles a new version.  A failure is logged once per version and
-- recorded for the status endpoint; the entry keeps the last good chunk.
local function compile(name, script, version, entry)
    local fn, err = loadfile(script, "t")

    if not fn then
        log(ERR, "gateway: route \"", name, "\" version ", version,
            " does not compile: ", err)
        status.route_failed(name, version, err)

        return { version = entry and entry.version, fn = entry and entry.fn,
                 bad = version }
    end

    log(INFO, "gateway: compiled route \"", name, "\" version ", version)
    status.route_compiled(name)

    return { version = version, fn = fn }
end


function _M.serve()
    local script = var.route_script

    if not script then
        log(ERR, "gateway: no $route_script, is route_guard missing ",
            "from this location?")
        return exit(HTTP_INTERNAL_SERVER_ERROR)
    end

    -- empty with route_guard_cache off: then every request compiles
    local version = var.route_version or "uncached"

    modules.refresh()

    local entry = chunks:get(script)

    if entry == nil
       or (entry.version ~= version and entry.bad ~= version)
       or version == "uncached"
    then
        entry = compile(var.route_name, script, version, entry)
        chunks:set(script, entry)
    end

    local fn = entry.fn

    if fn == nil then
        return exit(HTTP_INTERNAL_SERVER_ERROR)
    end

    return fn()
end


return _M
