-- Runs the route script the route guard accepted, compiled once per
-- version of its file.
--
-- The guard gives each request the confined script path ($route_script)
-- and a version ($route_version) that changes exactly when the file may
-- have changed, as inotify told the worker before it read the request;
-- the router reads both through one FFI call.
-- So a request for an unchanged route costs a table lookup, and the first
-- request after an edit compiles the new file.  A file that does not
-- compile leaves the last good version serving (the workers share the
-- last good source through lua_shared_dict gateway_scripts).
--
--   init_by_lua_block { require("gateway.router").init{ modules = dir } }
--   init_worker_by_lua_block { require("gateway.router").init_worker() }
--   content_by_lua_block     { require("gateway.router").serve() }

local base = require "resty.core.base"
local process = require "ngx.process"
local guard = require "gateway.guard"
local modules = require "gateway.modules"
local status = require "gateway.status"
local metrics = require "gateway.metrics"
local errors = require "gateway.errors"

local get_request = base.get_request
local guard_script = guard.script
local guard_identity = guard.identity
local io_open = io.open
local load = load
local ipairs = ipairs
local pairs = pairs
local ngx = ngx
local shared = ngx.shared
local var = ngx.var
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local INFO = ngx.INFO
local HTTP_INTERNAL_SERVER_ERROR = ngx.HTTP_INTERNAL_SERVER_ERROR


local _M = { _VERSION = "0.1" }


-- A cache of compiled scripts for one kind of location: the routes
-- (serve) or the sandbox (gateway.sandbox).  cache.chunks: script path ->
-- { name = route, version = v, fn = chunk or nil, bad = v or nil }, one
-- entry per script of the tree that was asked for; the sweep drops the
-- entries of deleted scripts, so that their chunks are freed.
-- cache.by_version: version -> the same entries (versions are unique in
-- a worker, so the request path finds its chunk by number, without
-- building the path).  cache.prepare(fn) is applied to every chunk
-- compiled; cache.tree names the routes root in the status and metrics.
local caches = {}


function _M.new_cache(opts)
    opts = opts or {}
    local cache = { chunks = {}, by_version = {}, prepare = opts.prepare,
                    tree = opts.tree or "routes" }
    caches[#caches + 1] = cache
    return cache
end


local function forget(by_version, entry)
    if entry then
        if entry.version then
            by_version[entry.version] = nil
        end
        if entry.bad then
            by_version[entry.bad] = nil
        end
    end
end


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

    local sources = shared.gateway_scripts

    for _, cache in ipairs(caches) do
        local chunks = cache.chunks

        for script, entry in pairs(chunks) do
            local f = io_open(script, "rb")
            if f then
                f:close()
            else
                chunks[script] = nil
                forget(cache.by_version, entry)

                -- a route created again later starts afresh
                if sources then
                    sources:delete(script)
                end
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


local ENOENT = 2


-- The script the guard accepted, as this worker reads it now: { script =,
-- size =, mtime =, source = }, or nil, an error and the errno.
local function read_file(script)
    local f, err, errno = io_open(script, "rb")
    if not f then
        return nil, err, errno
    end

    local source
    source, err = f:read("*a")
    f:close()

    if not source then
        return nil, err
    end

    local size, mtime = guard_identity(get_request())

    return { script = script, size = size, mtime = mtime, source = source }
end


-- The last source that compiled, per script, shared by the workers: a
-- worker that never ran the old version can still fall back to it when
-- the new one does not compile.
local function last_good(script)
    local sources = shared.gateway_scripts
    return sources and sources:get(script)
end


local function keep_good(script, source)
    local sources = shared.gateway_scripts
    if sources then
        local ok, err = sources:set(script, source)
        if not ok then
            log(WARN, "gateway: cannot keep the source of \"", script,
                "\" in lua_shared_dict gateway_scripts: ", err)
        end
    end
end


-- Compiles a new version.  A failure is logged once per version and
-- recorded for the status endpoint; the entry keeps the last good chunk,
-- this worker's or the one the workers share.  A script that cannot be
-- read (gone or made unreadable since the guard looked) gives nil and the
-- status to answer with: the next request sees what the guard sees.
local function compile(cache, name, script, version, entry)
    local file, err, errno = read_file(script)

    if not file then
        log(WARN, "gateway: route \"", name, "\" cannot be read: ", err)
        return nil, errno == ENOENT and 404 or 503
    end

    local prepare = cache.prepare
    local fn

    fn, err = load(file.source, "@" .. script, "t")

    if fn and prepare then
        prepare(fn)
    end

    metrics.register(cache.tree, name, script)
    metrics.compiled(fn ~= nil)

    if fn then
        log(INFO, "gateway: compiled route \"", name, "\" version ", version)
        status.route_version(cache.tree, name, version, file, file.source)
        keep_good(script, file.source)

        if entry and entry.source ~= file.source then
            metrics.reloaded("route")
        end

        return { name = name, version = version, fn = fn,
                 source = file.source }
    end

    log(ERR, "gateway: route \"", name, "\" version ", version,
        " does not compile: ", err)

    entry = { name = name, version = entry and entry.version,
              fn = entry and entry.fn, source = entry and entry.source,
              bad = version }

    if entry.fn == nil then
        local source = last_good(script)
        entry.fn = source and load(source, "@" .. script, "t")
        if entry.fn then
            entry.source = source
            if prepare then
                prepare(entry.fn)
            end
        end
    end

    status.route_version(cache.tree, name, version, file, entry.source, err)

    return entry
end


-- The chunk of the script the route guard accepted for this request, in
-- this cache, compiled when its version moved.  nil and the status to
-- answer with when there is none: no script accepted (500), a new script
-- that does not compile (500), one gone or unreadable since the guard
-- looked (404, 503).
function _M.chunk(cache)
    local r = get_request()
    local version = guard_script(r)

    if version == nil then
        log(ERR, "gateway: no script accepted for this request, is ",
            "route_guard missing from this location?")
        return nil, HTTP_INTERNAL_SERVER_ERROR
    end

    -- 0 with route_guard_cache off: then every request compiles
    local by_version = cache.by_version
    local entry = by_version[version]

    if entry == nil then
        local _, script = guard_script(r, true)
        local chunks = cache.chunks
        local old = chunks[script]

        entry = old

        if old == nil
           or (old.version ~= version and old.bad ~= version)
           or version == 0
        then
            local answer
            entry, answer = compile(cache, var.route_name, script, version,
                                    old)
            if entry == nil then
                return nil, answer
            end

            chunks[script] = entry
            forget(by_version, old)
        end

        if version ~= 0 then
            by_version[version] = entry
        end
    end

    if entry.fn == nil then
        return nil, HTTP_INTERNAL_SERVER_ERROR
    end

    return entry.fn
end


local routes = _M.new_cache()


function _M.serve()
    modules.refresh()

    local fn, answer = _M.chunk(routes)

    if fn == nil then
        return errors.exit(answer)
    end

    return fn()
end


return _M
