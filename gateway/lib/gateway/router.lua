-- Runs the route script the route guard accepted, compiled once per
-- version of its file.
--
-- The guard gives each request the confined script path ($route_script)
-- and a version ($route_version) that changes exactly when the file may
-- have changed, as inotify told the worker before it read the request.
-- So a request for an unchanged route costs a table lookup, and the first
-- request after an edit compiles the new file.  A file that does not
-- compile leaves the last good version serving (the workers share the
-- last good source through lua_shared_dict gateway_scripts).
--
--   init_by_lua_block { require("gateway.router").init{ modules = dir } }
--   init_worker_by_lua_block { require("gateway.router").init_worker() }
--   content_by_lua_block     { require("gateway.router").serve() }

local process = require "ngx.process"
local modules = require "gateway.modules"
local status = require "gateway.status"

local io_open = io.open
local load = load
local pairs = pairs
local ngx = ngx
local shared = ngx.shared
local var = ngx.var
local log = ngx.log
local exit = ngx.exit
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO
local HTTP_INTERNAL_SERVER_ERROR = ngx.HTTP_INTERNAL_SERVER_ERROR


local _M = { _VERSION = "0.1" }


-- script path -> { version = v, fn = chunk or nil, bad = v or nil }.
-- One entry per script of the tree that was asked for; the sweep drops
-- the entries of deleted scripts, so that their chunks are freed.
local chunks = {}

local DEFAULT_SWEEP_INTERVAL = 10   -- seconds


function _M.init(opts)
    opts = opts or {}
    _M.sweep_interval = opts.sweep_interval or DEFAULT_SWEEP_INTERVAL
    modules.init(opts.modules)
end


local function sweep(premature)
    if premature then
        return
    end

    for script, entry in pairs(chunks) do
        local f = io_open(script, "rb")
        if f then
            f:close()
        else
            chunks[script] = nil
            if entry.bad then
                status.route_gone(entry.name)
            end
        end
    end
end


-- From init_worker_by_lua: a timer that frees the chunks of deleted
-- scripts (the guard answers 404 for them, so serve() never sees them).
function _M.init_worker()
    if process.type() ~= "worker" and process.type() ~= "single" then
        return
    end

    local ok, err = ngx.timer.every(_M.sweep_interval, sweep)
    if not ok then
        log(ERR, "gateway: cannot start the chunk sweep: ", err)
    end
end


local function read_file(path)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, err
    end

    local source
    source, err = f:read("*a")
    f:close()

    return source, err
end


-- The last source that compiled, per script, shared by the workers: a
-- worker that never ran the old version can still fall back to it when
-- the new one does not compile.
local function last_good(script)
    local d = shared.gateway_scripts
    return d and d:get(script)
end


local function keep_good(script, source)
    local d = shared.gateway_scripts
    if d then
        local ok, err = d:set(script, source)
        if not ok then
            log(WARN, "gateway: cannot keep the source of \"", script,
                "\" in lua_shared_dict gateway_scripts: ", err)
        end
    end
end


-- Compiles a new version.  A failure is logged once per version and
-- recorded for the status endpoint; the entry keeps the last good chunk,
-- this worker's or the one the workers share.
local function compile(name, script, version, entry)
    local source, err = read_file(script)
    local fn

    if source then
        fn, err = load(source, "@" .. script, "t")
    end

    if fn then
        log(INFO, "gateway: compiled route \"", name, "\" version ", version)
        status.route_compiled(name)
        keep_good(script, source)

        return { name = name, version = version, fn = fn }
    end

    log(ERR, "gateway: route \"", name, "\" version ", version,
        " does not compile: ", err)
    status.route_failed(name, version, err)

    entry = { name = name, version = entry and entry.version,
              fn = entry and entry.fn, bad = version }

    if entry.fn == nil then
        source = last_good(script)
        entry.fn = source and load(source, "@" .. script, "t")
    end

    return entry
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

    local entry = chunks[script]

    if entry == nil
       or (entry.version ~= version and entry.bad ~= version)
       or version == "uncached"
    then
        entry = compile(var.route_name, script, version, entry)
        chunks[script] = entry
    end

    local fn = entry.fn

    if fn == nil then
        return exit(HTTP_INTERNAL_SERVER_ERROR)
    end

    return fn()
end


return _M
