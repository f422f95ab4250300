-- Hot-swaps the Lua modules that routes require from the modules tree.
--
-- A loader of ours, ahead of the standard ones, loads "a.b" from
-- <modules>/a/b.lua and keeps its source; a thin wrapper of require
-- notes which module required which while loading.  When the route
-- guard's modules generation moves (inotify saw a change in the tree),
-- the loaded modules are compared with their files; a changed one is
-- dropped from package.loaded with every module that required it, so the
-- next require loads consistent new code.
--
-- A module that defined C types or prototypes (ffi.cdef, ffi.metatype)
-- or loaded a library (ffi.load) while loading cannot be dropped: loading
-- it again would redefine them (an error, or a leak that exhausts the FFI
-- after some 65k redefinitions).  It is kept as it is, and the operator
-- is told to reload nginx.

local ffi = require "ffi"
local status = require "gateway.status"

local C = ffi.C
local ngx = ngx
local log = ngx.log
local INFO = ngx.INFO
local WARN = ngx.WARN
local io_open = io.open
local load = load
local pairs = pairs
local next = next
local pcall = pcall
local error = error
local type = type
local package = package


ffi.cdef[[
unsigned int ngx_http_route_guard_modules_generation(void);
]]


local _M = { _VERSION = "0.1" }


local root              -- the modules tree, no trailing "/"
local seen_generation   -- the generation the loaded modules were checked at

-- name -> { path = file, source = text, ffi = "ffi.cdef" or nil,
--           warned = source already warned about }
local loaded = {}

-- name -> { [name of a module that required it while loading] = true }
local required_by = {}

-- the modules being loaded, innermost last
local loading = {}


local function read_file(path)
    local f = io_open(path, "rb")
    if not f then
        return nil
    end

    local data = f:read("*a")
    f:close()

    return data
end


-- package.loaders entry: returns a loader, or a string saying where it
-- looked, as the standard searchers do.
local function search(name)
    -- dotted names of plain segments only: nothing can leave the tree
    if type(name) ~= "string" or not name:find("^[%w_]+$")
       and not name:find("^[%w_]+[%w_.]*[%w_]$")
       or name:find("..", 1, true)
    then
        return nil
    end

    local path = root .. "/" .. name:gsub("%.", "/") .. ".lua"
    local source = read_file(path)

    if source == nil then
        return "\n\tno file '" .. path .. "'"
    end

    local chunk, err = load(source, "@" .. path, "t")
    if not chunk then
        error("error loading module '" .. name .. "' from file '" .. path
              .. "':\n\t" .. err, 0)
    end

    return function(...)
        loading[#loading + 1] = name

        local ok, res = pcall(chunk, ...)

        local m = loaded[name] or {}
        loading[#loading] = nil

        if not ok then
            -- require's "being loaded" mark would make every later
            -- require of it fail, even once the file is fixed
            loaded[name] = nil
            package.loaded[name] = nil
            error(res, 0)
        end

        m.path = path
        m.source = source
        m.warned = nil
        loaded[name] = m

        return res
    end
end


local function note_ffi(what)
    local name = loading[#loading]
    if name then
        local m = loaded[name]
        if not m then
            m = {}
            loaded[name] = m
        end
        m.ffi = m.ffi or what
    end
end


-- Drops a module and, first, every module that required it ("changed" is
-- the module whose file changed).  Returns how many were dropped.
local function unload(name, done, changed)
    if done[name] then
        return 0
    end

    local m = loaded[name]
    if m and m.ffi then
        if name ~= changed then
            log(WARN, "gateway: module \"", name, "\" uses the FFI (", m.ffi,
                ") and cannot be unloaded, so it keeps the old version of \"",
                changed, "\": reload nginx to use the new one")
            status.module_pinned(name, m.ffi)
        end
        return 0
    end

    done[name] = true

    local n = 1
    local parents = required_by[name]
    required_by[name] = nil

    if parents then
        for parent in pairs(parents) do
            n = n + unload(parent, done, changed)
        end
    end

    loaded[name] = nil
    package.loaded[name] = nil

    return n
end


local function check_files()
    local changed = {}

    for name, m in pairs(loaded) do
        local source = read_file(m.path)

        if source ~= m.source then
            if m.ffi then
                if m.warned ~= source then
                    m.warned = source
                    log(WARN, "gateway: module \"", name, "\" uses the FFI (",
                        m.ffi, ") and cannot be unloaded: reload nginx ",
                        "to use its new version")
                    status.module_pinned(name, m.ffi)
                end

            else
                changed[#changed + 1] = name
            end
        end
    end

    for i = 1, #changed do
        local name = changed[i]
        local n = unload(name, {}, name)

        if n > 0 then
            log(INFO, "gateway: module \"", name, "\" changed, unloading it ",
                "and ", n - 1, " dependents")
            status.module_reloaded()
        end
    end
end


-- Called once per request, before the route runs: costs one FFI call
-- unless the modules tree changed.
function _M.refresh()
    local generation = C.ngx_http_route_guard_modules_generation()

    -- 0: the tree is not watched, so look at the files every time
    if generation == seen_generation and generation ~= 0 then
        return
    end

    seen_generation = generation

    if next(loaded) ~= nil then
        check_files()
    end
end


-- Installs the loader and the require and FFI wrappers; from
-- init_by_lua, so that every worker inherits them.
function _M.init(dir)
    if root then
        return
    end

    if type(dir) ~= "string" or dir == "" then
        error("bad argument #1 to 'init' (modules directory expected)", 2)
    end

    root = dir:gsub("/+$", "")

    local loaders = package.loaders
    table.insert(loaders, 2, search)

    local require = require

    _G.require = function(name)
        local parent = loading[#loading]
        if parent then
            local parents = required_by[name]
            if not parents then
                parents = {}
                required_by[name] = parents
            end
            parents[parent] = true
        end

        return require(name)
    end

    for _, what in pairs({ "cdef", "load", "metatype" }) do
        local f = ffi[what]
        local label = "ffi." .. what

        ffi[what] = function(...)
            note_ffi(label)
            return f(...)
        end
    end
end


return _M
