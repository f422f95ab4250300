-- The gateway's privileged agent: a process the nginx master starts beside
-- the workers, with the master's privileges and no listening socket.  It
-- takes no input from requests.  Its one task: watch the configuration
-- sources (conf/), and when they change, render them, test the result the
-- way `nginx -t` does against the same prefix, and reload nginx (HUP to
-- the master) only when the test passes.
--
--   init_by_lua_block        { require("gateway.agent").enable() }
--   init_worker_by_lua_block { require("gateway.agent").init_worker{ ... } }
--
-- Route scripts and modules need nothing from the agent: every worker
-- watches them itself (the route guard's inotify), which keeps them
-- correct whether the agent lives or not.
--
-- The agent's event loop never blocks: its child processes (the render
-- script, `nginx -t`) run through ngx.pipe, each with a deadline, after
-- which it is killed and reaped.

local ffi = require "ffi"
local process = require "ngx.process"
local child = require "gateway.child"
local fleet = require "gateway.fleet"
local status = require "gateway.status"
local metrics = require "gateway.metrics"
local watchdog = require "gateway.watchdog"

local C = ffi.C
local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
local timer_every = ngx.timer.every
local now = ngx.now
local update_time = ngx.update_time
local io_open = io.open
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local ffi_string = ffi.string
local run = child.run


ffi.cdef[[
int inotify_init1(int flags);
int inotify_add_watch(int fd, const char *pathname, uint32_t mask);
long read(int fd, void *buf, size_t count);
int kill(int pid, int sig);
long readlink(const char *path, char *buf, size_t bufsiz);
]]


local _M = { _VERSION = "0.1" }


local IN_NONBLOCK = 0x800
local IN_CLOEXEC = 0x80000
local IN_CHANGES = 0x2 + 0x4 + 0x8 + 0x40 + 0x80 + 0x100 + 0x200
                   -- MODIFY ATTRIB CLOSE_WRITE MOVED_FROM MOVED_TO CREATE
                   -- DELETE
local SIGHUP = 1

local POLL_INTERVAL = 0.2   -- seconds between looks at the inotify queue
local QUIET_PERIOD = 0.5    -- a burst of writes is over after this long

_M.TIMEOUT = 30             -- seconds render-conf or `nginx -t` may take

local buf = ffi.new("char[?]", 4096)


local function nginx_binary()
    local path = ffi.new("char[?]", 4096)
    local n = C.readlink("/proc/self/exe", path, 4095)
    if n <= 0 then
        return nil
    end

    -- after a rebuild the running binary is a deleted file; its successor
    -- is at the same path
    return (ffi_string(path, n):gsub(" %(deleted%)$", ""))
end


-- what render-conf needs of the instance file that `make run` writes
local INSTANCE_VARS = { "CONF", "PORT", "STATUS_PORT", "ROUTES" }

local function read_instance(prefix)
    local f = io_open(prefix .. "instance", "rb")
    if not f then
        return nil
    end

    local vars = {}
    for line in f:lines() do
        local k, v = line:match("^([%w_]+)=(.*)$")
        if k then
            vars[k] = v
        end
    end
    f:close()

    return vars
end


-- Renders conf/ into <prefix>next/, tests it against <prefix>, and when
-- it passes, puts it in place and tells the master to reload.
local function apply(opts)
    local prefix = ngx.config.prefix()
    local vars = read_instance(prefix)

    if not vars then
        log(ERR, "gateway agent: no ", prefix, "instance, cannot render ",
            "the configuration")
        return
    end

    for _, k in ipairs(INSTANCE_VARS) do
        if not vars[k] then
            log(ERR, "gateway agent: ", prefix, "instance has no ", k,
                ", cannot render the configuration")
            return
        end
    end

    local next_prefix = prefix .. "next"
    local timeout = opts.timeout or _M.TIMEOUT
    local ok, out = run({ opts.render, vars.CONF, next_prefix, vars.PORT,
                          vars.STATUS_PORT, vars.ROUTES,
                          vars.MODULES or vars.LIB or "",
                          vars.SANDBOX_ROUTES or "", vars.WORKERS or "" },
                        timeout, vars.TRUSTED_CA
                                 and { "TRUSTED_CA=" .. vars.TRUSTED_CA })

    if ok then
        -- nothing to test or reload when the sources render to what
        -- runs: an agent's first look (an edit made while no agent
        -- watched), a change undone
        local same = run({ "/bin/sh", "-c", 'for f in "$1"/*.conf; do '
                           .. 'cmp -s "$f" "$2/${f##*/}" || exit 1; done',
                           "sh", next_prefix .. "/conf", prefix .. "conf" },
                         timeout)
        if same then
            if _M.last_failure then
                _M.last_failure = nil
                status.agent_test(true, "", now())
            end
            return
        end

        -- -e stderr: the test's complaints go to us, not to the live
        -- error log, where they would read as the running nginx's
        ok, out = run({ opts.nginx, "-t", "-q", "-e", "stderr",
                        "-p", prefix, "-c", "next/conf/nginx.conf" },
                      timeout)
    end

    update_time()

    -- the same failure again is the same text without times and pids
    out = out:gsub("%d+/%d+/%d+ %d+:%d+:%d+ ", "")
             :gsub("%[(%a+)%] %d+#%d+: ", "[%1] ")

    if not ok then
        if out ~= _M.last_failure then
            _M.last_failure = out
            log(ERR, "gateway agent: the new configuration is refused, ",
                "nginx keeps the old one: ", out)
        end
        status.agent_test(false, out, now())
        return
    end

    _M.last_failure = nil

    ok, out = run({ "/bin/sh", "-c", 'exec cp "$1"/*.conf "$2"', "sh",
                    next_prefix .. "/conf", prefix .. "conf/" }, timeout)
    if not ok then
        log(ERR, "gateway agent: cannot install the new configuration: ",
            out)
        status.agent_test(false, out, now())
        return
    end

    status.agent_test(true, "", now())

    local master = process.get_master_pid()
    if not master or C.kill(master, SIGHUP) ~= 0 then
        log(ERR, "gateway agent: cannot signal the master (pid ",
            tostring(master), ")")
        return
    end

    log(NOTICE, "gateway agent: configuration changed and tested, ",
        "reloading nginx")
    status.agent_reloaded(now())
    metrics.reloaded("config")
end


local function watch(opts)
    local fd = C.inotify_init1(IN_NONBLOCK + IN_CLOEXEC)
    if fd < 0 then
        return nil, "inotify_init1() failed: " .. ffi.errno()
    end

    if C.inotify_add_watch(fd, opts.conf, IN_CHANGES) < 0 then
        return nil, "inotify_add_watch(" .. opts.conf .. ") failed: "
                    .. ffi.errno()
    end

    -- a first look at once: what changed while no agent watched
    local pending = now()   -- when the last change of a burst was seen
    local applying   -- a test and reload in progress (its children run)

    local function tick(premature)
        if premature then
            return
        end

        status.agent_alive(now())

        local changed = false
        while C.read(fd, buf, 4096) > 0 do
            changed = true
        end

        if changed then
            pending = now()
            return
        end

        -- changes seen while a test runs are applied after it
        if pending and not applying and now() - pending >= QUIET_PERIOD then
            pending = nil
            applying = true
            local ok, err = pcall(apply, opts)
            applying = false
            if not ok then
                log(ERR, "gateway agent: ", err)
            end
        end
    end

    return timer_every(POLL_INTERVAL, tick)
end


-- With <prefix>fleet (gatewayctl writes it when ETCD= is set), the agent
-- also mirrors the fleet's scripts from etcd into the instance's trees.
local function start_fleet()
    local prefix = ngx.config.prefix()
    local settings, err = fleet.settings(prefix)
    if not settings then
        if err then
            log(ERR, "gateway agent: ", err)
        end
        return
    end

    local vars = read_instance(prefix) or {}
    local ok
    ok, err = fleet.start{ prefix = prefix, settings = settings, roots = {
        routes = vars.ROUTES, lib = vars.MODULES or vars.LIB,
        sandbox = vars.SANDBOX_ROUTES } }
    if not ok then
        log(ERR, "gateway agent: fleet: ", err)
    end
end


-- The agent is a child of nginx's master: "master_process off" leaves the
-- gateway without one (no configuration reloads), so it is refused.
local NO_MASTER = 'the gateway needs nginx\'s master process, which starts '
                  .. 'its privileged agent: "master_process off" is not '
                  .. 'supported'


function _M.enable()
    -- wherever the directive stands in the file; nginx -t
    -- skips init_by_lua, so only a start refuses
    if process.type() == "single" then
        error(NO_MASTER, 0)
    end

    local ok, err = process.enable_privileged_agent(64)
    if not ok then
        log(WARN, "gateway agent: disabled: ", err)
    end
    return ok
end


-- opts: conf = the configuration sources, render = gateway/bin/render-conf
function _M.init_worker(opts)
    if process.type() ~= "privileged agent" then
        return
    end

    opts.nginx = opts.nginx or nginx_binary()

    start_fleet()

    -- counts the workers the watchdog (C, in this process) kills
    watchdog.start()

    local ok, err = watch(opts)
    if not ok then
        log(ERR, "gateway agent: cannot watch ", opts.conf, ": ", err)
        return
    end

    log(NOTICE, "gateway agent: watching ", opts.conf)
end


return _M
