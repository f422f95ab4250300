-- Hot-swaps the Lua modules that routes require from the modules tree.
--
-- A searcher of ours, after the standard ones, loads "a.b" from
-- <modules>/a/b.lua and keeps its source; a thin wrapper of require
-- notes which module required which while loading.  When the route
-- guard's modules generation moves (inotify saw a change in the tree),
-- the loaded modules are compared with their files; a changed one is
-- dropped from package.loaded with every module that required it, so the
-- next require loads consistent new code.
--
-- Runtime and system modules win: require looks in package.loaded and
-- package.preload, then package.path and package.cpath (the runtime's
-- gateway/lib, the system's Lua paths), and only then in the modules
-- tree.  A file of the tree that a name resolved elsewhere would have
-- loaded is ignored, with a warning, once per name, the first time the
-- name is required after the file appeared.  A module loaded from the
-- tree stays until it is unloaded (its file, or a file of one it
-- required, changed); loaded again, it follows the rule, so a runtime or
-- system module installed meanwhile takes its place.
--
-- A module that defined C types or prototypes (ffi.cdef, ffi.metatype)
-- or loaded a library (ffi.load) while loading cannot be dropped: loading
-- it again would redefine them (an error, or a leak that exhausts the FFI
-- after some 65k redefinitions).  It is kept as it is, and the operator
-- is told to reload nginx.

local ffi = require "ffi"
local guard = require "gateway.guard"
local status = require "gateway.status"
local metrics = require "gateway.metrics"

local modules_generation = guard.modules_generation
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


local _M = { _VERSION = "0.2" }


local root              -- the modules tree, no trailing "/"
local seen_generation   -- the generation the loaded modules were checked at

-- the modules loaded from the tree: name -> { path = file, source =
-- text, ffi = "ffi.cdef" or nil, warned = source already warned about }
local tree_modules = {}

-- name -> { [name of a module that required it while loading] = true }
local required_by = {}

-- the modules being loaded, innermost last
local loading = {}

-- names required that the tree did not provide, looked up in the tree
-- since the generation last moved: name -> true
local probed = {}

-- names whose file in the tree was found shadowed: name -> true
local shadowed = {}


local function read_file(path)
    local f = io_open(path, "rb")
    if not f then
        return nil
    end

    local data = f:read("*a")
    f:close()

    return data
end


-- The file of the tree "name" maps to, relative to the tree, or nil for
-- a name that is not dotted plain segments: nothing can leave the tree.
local function tree_file(name)
    if type(name) ~= "string" or not name:find("^[%w_]+$")
       and not name:find("^[%w_]+[%w_.]*[%w_]$")
       or name:find("..", 1, true)
    then
        return nil
    end

    return (name:gsub("%.", "/")) .. ".lua"
end


-- package.loaders entry, the last one: returns a loader, or a string
-- saying where it looked, as the standard searchers do.
local function search(name)
    local file = tree_file(name)
    if file == nil then
        return nil
    end

    local path = root .. "/" .. file
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

        local module = tree_modules[name] or {}
        loading[#loading] = nil

        if not ok then
            -- require's "being loaded" mark would make every later
            -- require of it fail, even once the file is fixed
            tree_modules[name] = nil
            package.loaded[name] = nil
            error(res, 0)
        end

        module.path = path
        module.source = source
        module.warned = nil
        tree_modules[name] = module

        return res
    end
end


-- A name that require resolved without the tree: its file in the tree,
-- if there is one, is shadowed.
local function probe(name)
    probed[name] = true

    if shadowed[name] then
        return
    end

    local file = tree_file(name)
    local f = file and io_open(root .. "/" .. file, "rb")

    if f then
        f:close()
        shadowed[name] = true
        log(WARN, "gateway: module \"", name, "\" (", file, " in the ",
            "modules tree) is shadowed by a runtime or system module and ",
            "ignored")
    end
end


local function note_ffi(what)
    local name = loading[#loading]
    if name then
        local module = tree_modules[name]
        if not module then
            module = {}
            tree_modules[name] = module
        end
        module.ffi = module.ffi or what
    end
end


-- Drops a module and, first, every module that required it ("changed" is
-- the module whose file changed).  Returns how many were dropped.
local function unload(name, done, changed)
    if done[name] then
        return 0
    end

    local module = tree_modules[name]
    if module and module.ffi then
        if name ~= changed then
            log(WARN, "gateway: module \"", name, "\" uses the FFI (",
                module.ffi, ") and cannot be unloaded, so it keeps the old ",
                "version of \"", changed, "\": reload nginx to use the new ",
                "one")
            status.module_pinned(name, module.ffi)
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

    tree_modules[name] = nil
    package.loaded[name] = nil

    return n
end


local function check_files()
    local changed = {}

    for name, module in pairs(tree_modules) do
        local source = read_file(module.path)

        if source ~= module.source then
            if module.ffi then
                if module.warned ~= source then
                    module.warned = source
                    log(WARN, "gateway: module \"", name, "\" uses the FFI (",
                        module.ffi, ") and cannot be unloaded: reload nginx ",
                        "to use its new version")
                    status.module_pinned(name, module.ffi)
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
            metrics.reloaded("module")
        end
    end
end


-- Called once per request, before the route runs: costs one FFI call
-- unless the modules tree changed.
function _M.refresh()
    local generation = modules_generation()

    -- 0: the tree is not watched, so look at the files every time
    if generation == seen_generation and generation ~= 0 then
        return
    end

    seen_generation = generation

    if next(tree_modules) ~= nil then
        check_files()
    end

    -- a file that appeared may shadow a name required before
    if next(probed) ~= nil then
        probed = {}
    end
end


-- Installs the searcher and the require and FFI wrappers; from
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
    loaders[#loaders + 1] = search

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

        local module = require(name)

        if tree_modules[name] == nil and not probed[name] then
            probe(name)
        end

        return module
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
