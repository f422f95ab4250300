-- The node's side of the fleet: in the privileged agent, the keys under
-- /gateway/<fleet>/ in etcd are mirrored into the node's routes/, modules/
-- and sandbox/ trees, so that the guard, hot reload, last-good, metrics
-- and status work on them as on any file.  Workers never talk to etcd.
--
--   require("gateway.fleet").start{ prefix = ngx.config.prefix(),
--       settings = settings, roots = { routes =, lib =, sandbox = } }
--
-- One timer runs the sync: a range read of the prefix at one revision
-- (the first start, a compaction, a cluster or revision that is not the
-- one we followed), then a watch from the revision after the last one
-- applied, with a health check when the watch is quiet.  Each revision's
-- changes are applied in an order that never shows a route without its
-- module of the same revision: modules written before routes, routes
-- deleted before modules.  The revision applied, the content hash of
-- every key written and the keys refused are kept in
-- <prefix>fleet.state, so a new agent resumes where the last one
-- stopped.  Another timer reports the node's revision and errors under
-- /gateway/<fleet>/agents/<node>, with a lease: outside the range the
-- nodes read and watch (lib/ to sandbox/), so that no node hears the
-- others' reports.
-- README.md, "Fleet", says what a request can observe.

local cjson = require "cjson.safe"
local etcd = require "gateway.etcd"
local tree_mod = require "gateway.fleet.tree"
local status = require "gateway.status"

local ngx = ngx
local log = ngx.log
local ERR = ngx.ERR
local WARN = ngx.WARN
local NOTICE = ngx.NOTICE
local md5 = ngx.md5
local now = ngx.now
local sleep = ngx.sleep
local update_time = ngx.update_time
local exiting = ngx.worker.exiting
local timer_at = ngx.timer.at
local io_open = io.open
local os_remove = os.remove
local ipairs = ipairs
local loadstring = loadstring
local pairs = pairs
local pcall = pcall
local random = math.random
local sort = table.sort
local sub = string.sub
local tonumber = tonumber
local tostring = tostring
local type = type
local json_encode = cjson.encode
local json_decode = cjson.decode


local _M = { _VERSION = "0.1" }


_M.PAGE = 1000              -- keys per range request
_M.IDLE = 3                 -- s of a quiet watch before a health check
_M.BACKOFF_MIN = 0.5        -- s, the first retry's delay
_M.BACKOFF_MAX = 30         -- s, the longest
_M.REPORT_INTERVAL = 5      -- s between keepalives of the report's lease
_M.REPORT_TTL = 20          -- s a report outlives its node
_M.REPORT_REFRESH = 60      -- s between reports when nothing changed
_M.TOKEN_REFRESH = 240      -- s; etcd's simple tokens live 300 s
_M.MAX_ERRORS = 20          -- errors kept for /status and the report


-- the settings gatewayctl writes into <prefix>fleet
local SETTINGS = { "ETCD", "FLEET", "NODE", "ETCD_USER",
                   "ETCD_PASSWORD_FILE", "ETCD_CA", "ETCD_CERT", "ETCD_KEY" }


local function read_file(path)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, err
    end
    local data = f:read("*a")
    f:close()
    return data
end


-- <prefix>fleet as a table, or nil when the node has no fleet (no file),
-- or nil and an error
function _M.settings(prefix)
    local data = read_file(prefix .. "fleet")
    if not data then
        return nil
    end

    local s = {}
    for line in data:gmatch("[^\n]+") do
        local k, v = line:match("^([%w_]+)=(.*)$")
        if k then
            s[k] = v
        end
    end

    if not s.ETCD or s.ETCD == "" or not s.FLEET or s.FLEET == "" then
        return nil, prefix .. "fleet: ETCD and FLEET are required"
    end
    if not s.FLEET:match("^[%w_%-]+$") or #s.FLEET > 64 then
        return nil, prefix .. "fleet: FLEET is not a fleet name"
    end
    for _, k in ipairs(SETTINGS) do
        if s[k] == "" then
            s[k] = nil
        end
    end
    return s
end


-- the fleet's state in this agent; the counters come back from
-- gateway.status after a restart of the agent
local S = {
    revision = 0,           -- the last revision applied
    cluster = nil,          -- the cluster id it came from
    keys = {},              -- key below the prefix -> md5 of what we wrote
    connected = false,
    endpoint = nil,
    last_error = nil,
    applied = 0,            -- keys written or deleted
    refused = {},           -- reason -> keys refused
    resyncs = 0,            -- full reads of the prefix
    errors = {},            -- key -> { key, revision, reason, error }
    held = nil,             -- tree -> deletions held
    need_resync = false,
}


local function state_file()
    return S.prefix .. "fleet.state"
end


local function load_state()
    local data = read_file(state_file())
    if not data then
        return
    end
    local st = json_decode(data)
    if type(st) ~= "table" or type(st.keys) ~= "table" then
        log(WARN, "gateway fleet: ", state_file(), " is unreadable, ",
            "reading the whole prefix again")
        return
    end
    S.revision = tonumber(st.revision) or 0
    S.cluster = st.cluster
    S.keys = st.keys
    if type(st.errors) == "table" then
        S.errors = st.errors
    end
end


local function save_state()
    local ok, err = tree_mod.replace(state_file(), json_encode({
        revision = S.revision, cluster = S.cluster, keys = S.keys,
        errors = S.errors }))
    if not ok then
        log(ERR, "gateway fleet: cannot save ", state_file(), ": ", err)
    end
end


-- /status and /metrics read this
local function publish_status()
    local errors = {}
    for _, e in pairs(S.errors) do
        errors[#errors + 1] = e
    end
    sort(errors, function(a, b) return a.key < b.key end)
    while #errors > _M.MAX_ERRORS do
        errors[#errors] = nil
    end

    status.fleet({
        fleet = S.fleet,
        node = S.node,
        endpoint = S.endpoint,
        connected = S.connected,
        revision = S.revision,
        last_error = S.last_error,
        applied = S.applied,
        refused = S.refused,
        resyncs = S.resyncs,
        errors = errors,
        held = S.held,
    })
end


-- errors are logged when they change, not every retry
local last_logged

local function failed(err)
    S.connected = false
    S.last_error = err
    if err ~= last_logged then
        last_logged = err
        log(ERR, "gateway fleet: ", err)
    end
    publish_status()
end


local function refuse(rel, revision, reason, msg)
    local e = S.errors[rel]
    if e and e.revision == revision then
        return
    end
    S.refused[reason] = (S.refused[reason] or 0) + 1
    S.errors[rel] = { key = rel, revision = revision, reason = reason,
                      error = msg }
    log(WARN, "gateway fleet: ", rel, " at revision ", revision,
        " refused: ", msg)
end


-- A key below the prefix and its value (nil: deleted) as a change:
-- { rel, where, value, hash } or nil when refused (reported).
local function change(rel, value, revision)
    local where, reason, msg = S.tree:place(rel, value)
    if not where then
        refuse(rel, revision, reason, msg)
        return nil
    end

    if value then
        -- text only; a script that does not compile is not written, so
        -- the node keeps serving the last good one
        local fn, err = loadstring(value, "=" .. rel)
        if not fn then
            refuse(rel, revision, "compile", err)
            return nil
        end
    end

    return { rel = rel, where = where, value = value,
             hash = value and md5(value) }
end


-- modules first, then routes and sandboxed scripts; deletions the other
-- way round
local ORDER = { lib = 1, routes = 2, sandbox = 2 }

local function ordered(changes)
    sort(changes, function(a, b)
        local pa = a.value and ORDER[a.where.tree] or 5 - ORDER[a.where.tree]
        local pb = b.value and ORDER[b.where.tree] or 5 - ORDER[b.where.tree]
        if pa ~= pb then
            return pa < pb
        end
        return a.rel < b.rel
    end)
    return changes
end


local function apply(changes, revision)
    for _, c in ipairs(ordered(changes)) do
        local ok, err
        if c.value then
            ok, err = S.tree:write(c.where, c.value)
        else
            ok, err = S.tree:remove(c.where)
        end

        if ok then
            S.keys[c.rel] = c.hash
            S.errors[c.rel] = nil
            S.applied = S.applied + 1
        else
            refuse(c.rel, revision, "write", err)
        end
    end
end


local function file_exists(path)
    local f = io_open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end


-- The whole prefix at one revision: writes what differs from what we
-- wrote (or is missing on disk), deletes what etcd no longer has.  More
-- than half of a tree's keys deleted at once is held (a wiped or wrong
-- etcd) until <prefix>fleet.confirm exists.
local function resync(kvs, revision, cluster)
    local prefix_len = #S.key_prefix
    local seen, changes = {}, {}

    for _, kv in ipairs(kvs) do
        local rel = sub(kv.key, prefix_len + 1)
        seen[rel] = true
        local hash = md5(kv.value or "")
        local c = change(rel, kv.value or "",
                         tonumber(kv.mod_revision) or revision)
        if c and (S.keys[rel] ~= hash or not file_exists(c.where.path)) then
            changes[#changes + 1] = c
        end
    end

    local managed, deleting = {}, {}
    for rel in pairs(S.keys) do
        local where = S.tree:place(rel)
        if where then
            managed[where.tree] = (managed[where.tree] or 0) + 1
            if not seen[rel] then
                deleting[#deleting + 1] = { rel = rel, where = where }
            end
        else
            S.keys[rel] = nil
        end
    end

    local per_tree = {}
    for _, d in ipairs(deleting) do
        per_tree[d.where.tree] = (per_tree[d.where.tree] or 0) + 1
    end

    local confirm = S.prefix .. "fleet.confirm"
    local confirmed = file_exists(confirm)
    local held

    for t, n in pairs(per_tree) do
        if n > 1 and n * 2 > managed[t] and not confirmed then
            held = held or {}
            held[t] = n
        end
    end

    for _, d in ipairs(deleting) do
        if not (held and held[d.where.tree]) then
            changes[#changes + 1] = d
        end
    end

    -- the errors of keys that are gone go with them
    for rel in pairs(S.errors) do
        if not seen[rel] then
            S.errors[rel] = nil
        end
    end

    apply(changes, revision)

    if held then
        if not S.held then
            log(ERR, "gateway fleet: etcd no longer has more than half ",
                "of a tree's keys; the deletions are held and the files ",
                "kept until ", confirm, " exists")
        end
    elseif confirmed then
        os_remove(confirm)
    end
    S.held = held

    S.revision = revision
    S.cluster = cluster
    S.resyncs = S.resyncs + 1
    S.need_resync = false
    save_state()
    publish_status()
end


-- a watch message's events, revision by revision
local function apply_events(events)
    local prefix_len = #S.key_prefix
    local by_rev, revs = {}, {}

    for _, ev in ipairs(events) do
        local kv = ev.kv or {}
        local rev = tonumber(kv.mod_revision) or 0
        local list = by_rev[rev]
        if not list then
            list = {}
            by_rev[rev] = list
            revs[#revs + 1] = rev
        end
        list[#list + 1] = ev
    end
    sort(revs)

    for _, rev in ipairs(revs) do
        if rev > S.revision then
            local changes = {}
            for _, ev in ipairs(by_rev[rev]) do
                local rel = sub(ev.kv.key, prefix_len + 1)

                if ev.type == "DELETE" then
                    -- only what we wrote is ours to delete
                    local where = S.keys[rel] and S.tree:place(rel)
                    if where then
                        changes[#changes + 1] = { rel = rel, where = where }
                    end
                    S.errors[rel] = nil

                else
                    local c = change(rel, ev.kv.value or "", rev)
                    if c and S.keys[rel] ~= c.hash then
                        changes[#changes + 1] = c
                    end
                end
            end
            apply(changes, rev)
            S.revision = rev
        end
    end
end


-- The events of a watch answer whose revisions are complete: all of
-- them but for a fragment (more of the answer follows), whose last
-- revision may go on in the next one and waits for it.  What waits is at
-- most one revision's events.
local waiting = {}

local function whole_revisions(events, fragment)
    local all = waiting
    for i = 1, #events do
        all[#all + 1] = events[i]
    end

    waiting = {}
    if not fragment or #all == 0 then
        return all
    end

    local last = all[#all].kv.mod_revision
    local whole = {}
    for _, ev in ipairs(all) do
        if ev.kv.mod_revision == last then
            waiting[#waiting + 1] = ev
        else
            whole[#whole + 1] = ev
        end
    end
    return whole
end


local function full_read(cli)
    local kvs, revision, cluster = cli:range_all(S.first, S.last, _M.PAGE)
    if not kvs then
        return nil, revision
    end
    S.connected = true
    S.endpoint = cli:endpoint()
    S.last_error = nil
    last_logged = nil
    resync(kvs, revision, cluster)
    return true
end


-- One connection's life: read the prefix if we must, then watch until
-- something ends the watch.  Returns nil and why; "resync" asks for a
-- full read at once.
local function session(cli)
    if S.revision == 0 or S.need_resync then
        local ok, err = full_read(cli)
        if not ok then
            return nil, err
        end
    end

    waiting = {}
    local w, err = cli:watch(S.first, S.last, S.revision + 1)
    if not w then
        return nil, err
    end

    local token_at = now()

    while not exiting() do
        local msg
        msg, err = w:next(_M.IDLE * 1000)

        if msg then
            if msg.error then
                w:close()
                return nil, "watch: " .. tostring(msg.error.message
                                                  or msg.error.error)
            end

            local r = msg.result or {}
            local header = r.header or {}
            local rev = tonumber(header.revision)

            -- a permission error is canceled and created at once
            if r.canceled then
                w:close()
                if r.compact_revision then
                    log(NOTICE, "gateway fleet: revision ", S.revision + 1,
                        " is compacted (", r.compact_revision, "): ",
                        "reading the whole prefix again")
                    S.need_resync = true
                    return nil, "resync"
                end
                return nil, "watch canceled: "
                            .. tostring(r.cancel_reason or "no reason")
            end

            if header.cluster_id and S.cluster
               and header.cluster_id ~= S.cluster
            then
                w:close()
                log(WARN, "gateway fleet: ", cli:endpoint(), " belongs to ",
                    "another cluster: reading the whole prefix again")
                S.need_resync = true
                return nil, "resync"
            end

            if rev and rev < S.revision then
                w:close()
                log(WARN, "gateway fleet: etcd's revision ", rev,
                    " is behind the one applied (", S.revision, "): ",
                    "reading the whole prefix again")
                S.need_resync = true
                return nil, "resync"
            end

            if not S.connected then
                S.connected = true
                S.endpoint = cli:endpoint()
                S.last_error = nil
                last_logged = nil
                publish_status()
            end

            if r.events then
                etcd.decode_events(r.events)
                -- of a fragmented answer, the revisions that are whole
                local events = whole_revisions(r.events, r.fragment)
                if #events > 0 then
                    apply_events(events)
                    save_state()
                    publish_status()
                end

            elseif rev and not r.created and rev > S.revision then
                -- a progress notification: nothing of ours up to rev
                S.revision = rev
            end

        elseif err == "timeout" then
            -- quiet: is the member still there, still ours?
            local res, herr = cli:range(S.first, S.last, nil, 1)
            if not res then
                w:close()
                return nil, herr
            end
            local h = res.header or {}
            if S.cluster and h.cluster_id and h.cluster_id ~= S.cluster then
                w:close()
                S.need_resync = true
                return nil, "resync"
            end

        else
            w:close()
            return nil, err
        end

        -- held deletions go ahead once an operator confirms them
        if S.held and file_exists(S.prefix .. "fleet.confirm") then
            w:close()
            S.need_resync = true
            return nil, "resync"
        end

        update_time()
        if now() - token_at > _M.TOKEN_REFRESH then
            token_at = now()
            local ok, terr = cli:refresh_token()
            if not ok then
                log(WARN, "gateway fleet: token refresh: ", terr)
            end
        end
    end

    w:close()
    return nil, "exiting"
end


local function sync(premature, cli)
    if premature then
        return
    end

    local backoff = _M.BACKOFF_MIN

    while not exiting() do
        local before = S.revision
        -- session() returns nil and why; a Lua error is a bug, logged
        local ok, res, err = pcall(session, cli)
        if not ok then
            err = "sync: " .. tostring(res)
        end

        if err == "exiting" or exiting() then
            return
        end

        if err == "resync" then
            backoff = _M.BACKOFF_MIN
        else
            failed(err)
            if S.revision > before then
                backoff = _M.BACKOFF_MIN
            end
            -- capped exponential, with jitter: a fleet does not reconnect
            -- in step
            sleep(backoff * (0.5 + random()))
            backoff = backoff * 2
            if backoff > _M.BACKOFF_MAX then
                backoff = _M.BACKOFF_MAX
            end
        end
    end
end


-- The node's report, under a lease that ends with the node: written when
-- it changes and every REPORT_REFRESH seconds, the lease kept alive in
-- between (a keepalive is no write).
local lease
local reported, reported_at = nil, 0

local function report(premature, cli)
    if premature or exiting() then
        return
    end

    if lease and (cli:keepalive(lease) or 0) <= 0 then
        lease, reported = nil, nil
    end
    if not lease then
        lease = cli:grant(_M.REPORT_TTL)
    end

    if lease then
        local errors = {}
        for _, e in pairs(S.errors) do
            if #errors < _M.MAX_ERRORS then
                errors[#errors + 1] = { key = e.key, revision = e.revision,
                                        error = e.error }
            end
        end
        sort(errors, function(a, b) return a.key < b.key end)
        local body = json_encode({ node = S.node, revision = S.revision,
                                   connected = S.connected,
                                   errors = errors })

        update_time()
        if body ~= reported or now() - reported_at >= _M.REPORT_REFRESH then
            -- "at": when this was written, for the age gatewayctl shows
            local ok, err = cli:put(S.key_prefix .. "agents/" .. S.node,
                body:sub(1, -2) .. ',"at":' .. now() .. "}", lease)
            if ok then
                reported, reported_at = body, now()
            else
                lease = nil
                log(NOTICE, "gateway fleet: report: ", err)
            end
        end
    end

    timer_at(_M.REPORT_INTERVAL, report, cli)
end


-- opts: prefix (the node's nginx prefix, with "/"), settings (from
-- settings()), roots { routes =, lib =, sandbox = }
function _M.start(opts)
    local s = opts.settings

    local password
    if s.ETCD_USER then
        local data, err = read_file(s.ETCD_PASSWORD_FILE or "")
        if not data then
            return nil, "ETCD_PASSWORD_FILE: " .. tostring(err)
        end
        -- one final newline is not part of it (as gatewayctl reads it)
        password = data:gsub("\n$", "")
    end

    -- TLS: the server is verified against ETCD_CA (gateway.conf's
    -- lua_ssl_trusted_certificate, rendered from it); a client
    -- certificate when etcd asks for one
    local cert, key
    if s.ETCD_CERT then
        local ssl = require "ngx.ssl"
        local pem, err = read_file(s.ETCD_CERT)
        cert = pem and ssl.parse_pem_cert(pem)
        if not cert then
            return nil, "ETCD_CERT: " .. tostring(err or "not a PEM "
                                                   .. "certificate")
        end
        pem, err = read_file(s.ETCD_KEY or "")
        key = pem and ssl.parse_pem_priv_key(pem)
        if not key then
            return nil, "ETCD_KEY: " .. tostring(err or "not a PEM key")
        end
    end

    local endpoints = {}
    for url in s.ETCD:gmatch("[^,%s]+") do
        endpoints[#endpoints + 1] = url
    end

    local cli, err = etcd.new{ endpoints = endpoints, user = s.ETCD_USER,
                               password = password, cert = cert,
                               key = key }
    if not cli then
        return nil, err
    end

    S.prefix = opts.prefix
    S.fleet = s.FLEET
    S.node = s.NODE or "node"
    S.key_prefix = "/gateway/" .. s.FLEET .. "/"
    -- the three trees' keys, and whatever else sorts between them
    S.first = S.key_prefix .. "lib/"
    S.last = S.key_prefix .. "sandbox0"
    S.tree = tree_mod.new(opts.roots)

    local old = status.fleet_report()
    if old then
        S.applied = tonumber(old.applied) or 0
        S.refused = type(old.refused) == "table" and old.refused or {}
        S.resyncs = tonumber(old.resyncs) or 0
    end

    load_state()
    publish_status()

    local ok
    ok, err = timer_at(0, sync, cli)
    if not ok then
        return nil, err
    end
    ok, err = timer_at(0, report, cli)
    if not ok then
        return nil, err
    end

    log(NOTICE, "gateway fleet: node ", S.node, " of fleet ", s.FLEET,
        ", from revision ", S.revision, ", etcd at ", s.ETCD)
    return true
end


return _M
