-- The node's trees as the fleet writes them: a store key's place under
-- one of three roots, and files written so that a reader sees the old
-- content or the new, never a part (a temporary file in the same
-- directory, fsync, rename), deleted by unlink.
--
--   local tree = require "gateway.fleet.tree"
--   local t = tree.new{ routes = "/srv/routes", lib = "/srv/modules",
--                       sandbox = "/srv/sandbox" }
--   local where, err = t:place("routes/a/b.lua", value)  -- validated
--   local ok, err = t:write(where, value)
--   local ok, err = t:remove(where)
--
-- Whatever the store says, nothing is written outside the roots: names
-- obey the route guard's grammar (no "..", no leading "/", no byte
-- outside [A-Za-z0-9_/-]), and no directory on the way may be a
-- symbolic link.

local ffi = require "ffi"
local guard = require "gateway.guard"

local C = ffi.C
local byte = string.byte
local find = string.find
local sub = string.sub
local setmetatable = setmetatable
local tostring = tostring
local ffi_errno = ffi.errno
local ffi_string = ffi.string
local check_name = guard.check_name


ffi.cdef[[
int open(const char *path, int flags, int mode);
int close(int fd);
long write(int fd, const void *buf, size_t count);
int fsync(int fd);
int mkdir(const char *path, unsigned int mode);
int rmdir(const char *path);
int rename(const char *old, const char *new);
int unlink(const char *path);
char *strerror(int errnum);
int getpid(void);
]]


local _M = { _VERSION = "0.1" }

local mt = { __index = _M }


-- the store's word for each tree; "lib" stays the key word for the
-- modules tree whatever the directory is called
_M.TREES = { "lib", "routes", "sandbox" }

_M.MAX_SCRIPT = 1024 * 1024         -- bytes of one script

local O_WRONLY = 0x1
local O_CREAT = 0x40
local O_TRUNC = 0x200
local O_DIRECTORY = 0x10000
local O_NOFOLLOW = 0x20000
local O_CLOEXEC = 0x80000
local EEXIST = 17
local ENOENT = 2
local ENOTEMPTY = 39

local BYTECODE_MARK = 0x1b


local function os_error(what, path)
    local errno = ffi_errno()
    return what .. " " .. path .. ": " .. ffi_string(C.strerror(errno)),
           errno
end


-- roots: { lib =, routes =, sandbox = } directories (nil: that tree is
-- not fed)
function _M.new(roots)
    return setmetatable({ roots = roots }, mt)
end


-- Where the store's key (relative to the fleet's prefix) goes: { tree,
-- name, root, path }, or nil and why it is refused (a reason word, then
-- a message).  value, when given, is checked too.
function _M.place(self, rel, value)
    local slash = find(rel, "/", 1, true)
    if not slash then
        return nil, "tree", "not under routes/, lib/ or sandbox/"
    end

    local tree = sub(rel, 1, slash - 1)
    local root = self.roots[tree]
    if tree ~= "lib" and tree ~= "routes" and tree ~= "sandbox" then
        return nil, "tree", "not under routes/, lib/ or sandbox/"
    end
    if not root then
        return nil, "tree", "this node has no " .. tree .. " tree"
    end

    local file = sub(rel, slash + 1)
    if #file < 5 or sub(file, -4) ~= ".lua" then
        return nil, "name", "not a .lua file"
    end

    local name = sub(file, 1, -5)
    local ok, reason = check_name(name)
    if not ok then
        return nil, "name", "name refused by the route grammar (" .. reason
                            .. ")"
    end

    if value then
        if #value > _M.MAX_SCRIPT then
            return nil, "size", "larger than " .. _M.MAX_SCRIPT .. " bytes"
        end
        if byte(value, 1) == BYTECODE_MARK then
            return nil, "bytecode", "precompiled bytecode is refused"
        end
    end

    return { tree = tree, name = name, root = root,
             path = root .. "/" .. name .. ".lua" }
end


-- each directory between the root and the file exists and is no link
local function make_dirs(where)
    local name = where.name
    local pos = 1
    while true do
        local slash = find(name, "/", pos, true)
        if not slash then
            return true
        end
        local dir = where.root .. "/" .. sub(name, 1, slash - 1)
        if C.mkdir(dir, 493) ~= 0 and ffi_errno() ~= EEXIST then   -- 0755
            return nil, os_error("mkdir", dir)
        end
        local fd = C.open(dir, O_DIRECTORY + O_NOFOLLOW + O_CLOEXEC, 0)
        if fd < 0 then
            return nil, os_error("open", dir)
        end
        C.close(fd)
        pos = slash + 1
    end
end


-- Puts data at path: a reader sees the old content or the new, never a
-- part; on disk before the rename.  The temporary file, in the same
-- directory, has a dot name, which the route grammar refuses.
function _M.replace(path, data)
    local dir, base = path:match("^(.*)/([^/]+)$")
    local tmp = dir .. "/." .. base .. ".fleet." .. tostring(C.getpid())

    local fd = C.open(tmp, O_WRONLY + O_CREAT + O_TRUNC + O_NOFOLLOW
                           + O_CLOEXEC, 420)                        -- 0644
    if fd < 0 then
        return nil, os_error("open", tmp)
    end

    local err
    local off, n = 0, #data
    while off < n do
        local w = C.write(fd, ffi.cast("const char *", data) + off, n - off)
        if w < 0 then
            err = os_error("write", tmp)
            break
        end
        off = off + w
    end

    if not err and C.fsync(fd) ~= 0 then
        err = os_error("fsync", tmp)
    end
    C.close(fd)

    if not err and C.rename(tmp, path) ~= 0 then
        err = os_error("rename", path)
    end

    if err then
        C.unlink(tmp)
        return nil, err
    end
    return true
end


-- Writes value into where.path, as replace() does.
function _M.write(_, where, value)
    local ok, err = make_dirs(where)
    if not ok then
        return nil, err
    end
    return _M.replace(where.path, value)
end


-- Removes where.path (gone already is fine), then the directories the
-- name made that are empty now.
function _M.remove(_, where)
    if C.unlink(where.path) ~= 0 and ffi_errno() ~= ENOENT then
        return nil, os_error("unlink", where.path)
    end

    local name = where.name
    while true do
        local dir = name:match("^(.*)/[^/]*$")
        if not dir then
            return true
        end
        if C.rmdir(where.root .. "/" .. dir) ~= 0 then
            local errno = ffi_errno()
            if errno ~= ENOTEMPTY and errno ~= EEXIST and errno ~= ENOENT then
                return nil, os_error("rmdir", where.root .. "/" .. dir)
            end
            return true
        end
        name = dir
    end
end


return _M
