-- A small etcd v3 client for the privileged agent: etcd's HTTP/JSON
-- gateway (/v3/kv/range, /v3/watch, /v3/lease/*, /v3/auth/authenticate)
-- spoken as HTTP/1.1 over ngx.socket.tcp.  No library: Debian packages
-- none for OpenResty, and the agent needs five calls.
--
--   local etcd = require "gateway.etcd"
--   local cli = etcd.new{ endpoints = { "http://127.0.0.1:2379" },
--                         user = "node", password = "..." }
--   local res, err = cli:range(key, range_end)
--   local w, err = cli:watch(key, range_end, start_revision)
--   local msg, err = w:next()           -- a decoded {"result": ...}
--
-- Keys and values are Lua strings (base64 on the wire); int64 fields
-- stay the JSON strings etcd sends (tonumber them where needed).  On a
-- network failure the next endpoint is tried.  Errors are
-- nil, "message" (etcd's own message when it answered), never with the
-- password or the token in them.

local cjson = require "cjson.safe"
local stream = require "gateway.etcd.stream"

local ngx = ngx
local tcp = ngx.socket.tcp
local encode_base64 = ngx.encode_base64
local decode_base64 = ngx.decode_base64
local find = string.find
local lower = string.lower
local sub = string.sub
local concat = table.concat
local ipairs = ipairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local floor = math.floor
local json_encode = cjson.encode
local json_decode = cjson.decode


local _M = { _VERSION = "0.1" }

local mt = { __index = _M }


local TIMEOUT = 5000                -- ms, for every call but the watch
local MAX_BODY = 64 * 1024 * 1024   -- bytes of a response body
local TOO_LARGE = "response too large"
local KEEPALIVE = 60000             -- ms an idle connection is kept

-- etcd's answer to a stale or unknown token (gRPC UNAUTHENTICATED)
local UNAUTHENTICATED = 16


-- "http://host:port" -> { url, scheme, host, port }; [v6]:port too
local function parse_endpoint(url)
    local scheme, host, port = url:match("^(https?)://([%w%.%-]+):(%d+)/?$")
    if not scheme then
        scheme, host, port = url:match("^(https?)://%[([%x:]+)%]:(%d+)/?$")
    end
    if not scheme then
        return nil, "bad etcd endpoint \"" .. url
                    .. "\" (http://host:port or https://host:port)"
    end
    return { url = url, scheme = scheme, host = host, port = tonumber(port) }
end


function _M.new(opts)
    local endpoints = {}
    for i, url in ipairs(opts.endpoints or {}) do
        local ep, err = parse_endpoint(url)
        if not ep then
            return nil, err
        end
        endpoints[i] = ep
    end
    if #endpoints == 0 then
        return nil, "no etcd endpoint"
    end

    return setmetatable({
        endpoints = endpoints,
        current = 1,
        user = opts.user,
        password = opts.password,
        cert = opts.cert,           -- parsed, for setclientcert()
        key = opts.key,
        verify = opts.verify ~= false,
        timeout = opts.timeout or TIMEOUT,
        token = nil,
    }, mt)
end


-- the endpoint in use
function _M.endpoint(self)
    return self.endpoints[self.current].url
end


local function connect(self, ep, timeout)
    local sock = tcp()
    sock:settimeouts(timeout, timeout, timeout)

    local ok, err = sock:connect(ep.host, ep.port)
    if not ok then
        return nil, "connect to " .. ep.url .. ": " .. err
    end

    if ep.scheme == "https" and sock:getreusedtimes() == 0 then
        if self.cert then
            ok, err = sock:setclientcert(self.cert, self.key)
            if not ok then
                sock:close()
                return nil, "client certificate: " .. err
            end
        end
        ok, err = sock:sslhandshake(nil, ep.host, self.verify)
        if not ok then
            sock:close()
            return nil, "TLS with " .. ep.url .. ": " .. err
        end
    end

    return sock
end


local function send_request(self, sock, ep, path, body, auth)
    local req = {
        "POST ", path, " HTTP/1.1\r\n",
        "Host: ", ep.host, ":", tostring(ep.port), "\r\n",
        "Content-Type: application/json\r\n",
        "Content-Length: ", tostring(#body), "\r\n",
    }
    if auth and self.token then
        req[#req + 1] = "Authorization: "
        req[#req + 1] = self.token
        req[#req + 1] = "\r\n"
    end
    req[#req + 1] = "\r\n"
    req[#req + 1] = body

    local ok, err = sock:send(req)
    if not ok then
        return nil, "send to " .. ep.url .. ": " .. err
    end
    return true
end


-- sock:receive(what), its error naming the endpoint
local function receive(sock, ep, what)
    local data, err = sock:receive(what)
    if not data then
        return nil, "read from " .. ep.url .. ": " .. err
    end
    return data
end


-- whether the answer's body comes in chunks
local function chunked(headers)
    return find(lower(headers["transfer-encoding"] or ""), "chunked", 1,
                true) ~= nil
end


-- status line and headers: status, { lowercased name = value }
local function read_head(sock, ep)
    local line, err = receive(sock, ep, "*l")
    if not line then
        return nil, err
    end

    local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
    if not status then
        return nil, "not an HTTP response from " .. ep.url
    end

    local headers = {}
    for _ = 1, 100 do
        line, err = receive(sock, ep, "*l")
        if not line then
            return nil, err
        end
        if line == "" then
            return status, headers
        end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
            headers[lower(name)] = value
        end
    end

    return nil, "too many headers from " .. ep.url
end


local function read_body(sock, ep, headers)
    local len = tonumber(headers["content-length"])
    if len then
        if len > MAX_BODY then
            return nil, TOO_LARGE
        end
        return receive(sock, ep, len)
    end

    if not chunked(headers) then
        return nil, "response without a length from " .. ep.url
    end

    local parts, size = {}, 0
    while true do
        local line, err = receive(sock, ep, "*l")
        if not line then
            return nil, err
        end
        local digits = line:match("^%x+")
        local n = digits and tonumber(digits, 16)
        if not n then
            return nil, "bad chunk from " .. ep.url
        end
        if n == 0 then
            -- trailers, up to the empty line
            repeat
                line, err = receive(sock, ep, "*l")
                if not line then
                    return nil, err
                end
            until line == ""
            return concat(parts)
        end
        size = size + n
        if size > MAX_BODY then
            return nil, TOO_LARGE
        end
        local data
        data, err = receive(sock, ep, n + 2)
        if not data then
            return nil, err
        end
        parts[#parts + 1] = sub(data, 1, n)
    end
end


-- etcd's error body: {"error": "...", "message": "...", "code": N}
local function etcd_error(status, body)
    local e = json_decode(body or "")
    if type(e) == "table" and (e.message or e.error) then
        return e.message or e.error, tonumber(e.code)
    end
    return "HTTP " .. status
end


-- One call on one endpoint: the decoded answer, or nil, an error, and
-- whether the endpoint itself failed (then the next one is tried).
local function call_endpoint(self, ep, path, body, auth)
    local sock, err = connect(self, ep, self.timeout)
    if not sock then
        return nil, err, true
    end

    local ok
    ok, err = send_request(self, sock, ep, path, body, auth)
    if not ok then
        sock:close()
        return nil, err, true
    end

    local status, headers = read_head(sock, ep)
    if not status then
        sock:close()
        return nil, headers, true
    end

    local data
    data, err = read_body(sock, ep, headers)
    if not data then
        sock:close()
        return nil, err, true
    end

    if lower(headers["connection"] or "") == "close" then
        sock:close()
    else
        sock:setkeepalive(KEEPALIVE, 4)
    end

    if status ~= 200 then
        local msg, code = etcd_error(status, data)
        -- an unavailable member is a failed endpoint
        return nil, msg, status >= 500 and code ~= UNAUTHENTICATED, code
    end

    local res = json_decode(data)
    if type(res) ~= "table" then
        return nil, "not JSON from " .. ep.url, true
    end
    return res
end


local function authenticate(self)
    local res, err, failed
    for _ = 1, #self.endpoints do
        local ep = self.endpoints[self.current]
        res, err, failed = call_endpoint(self, ep, "/v3/auth/authenticate",
            json_encode({ name = self.user, password = self.password }),
            false)
        if res then
            if type(res.token) ~= "string" then
                return nil, "authentication: no token in the answer"
            end
            self.token = res.token
            return true
        end
        if not failed then
            return nil, "authentication as " .. self.user .. ": " .. err
        end
        self.current = self.current % #self.endpoints + 1
    end
    return nil, err
end


-- POST path with the JSON of body; the decoded answer, or nil and an
-- error.  Tries each endpoint once, from the one in use.
function _M.call(self, path, body)
    body = json_encode(body)

    if self.user and not self.token then
        local ok, err = authenticate(self)
        if not ok then
            return nil, err
        end
    end

    local res, err, failed, code
    local retried = false
    local tries = 0

    while tries < #self.endpoints do
        local ep = self.endpoints[self.current]
        res, err, failed, code = call_endpoint(self, ep, path, body, true)
        if res then
            return res
        end

        if code == UNAUTHENTICATED and self.user and not retried then
            -- tokens expire (300 s by default): once more with a new one
            retried = true
            self.token = nil
            local ok, aerr = authenticate(self)
            if not ok then
                return nil, aerr
            end

        elseif not failed then
            return nil, err

        else
            self.current = self.current % #self.endpoints + 1
            tries = tries + 1
        end
    end

    return nil, err
end


-- a new token now (before the old one expires)
function _M.refresh_token(self)
    if not self.user then
        return true
    end
    self.token = nil
    return authenticate(self)
end


local function decode_kvs(kvs)
    for _, kv in ipairs(kvs or {}) do
        kv.key = decode_base64(kv.key or "")
        kv.value = kv.value and decode_base64(kv.value) or nil
    end
    return kvs or {}
end


-- kvs in [key, range_end) at revision (0 or nil: the newest), at most
-- limit of them (0 or nil: all)
function _M.range(self, key, range_end, revision, limit)
    local res, err = self:call("/v3/kv/range", {
        key = encode_base64(key),
        range_end = range_end and encode_base64(range_end) or nil,
        revision = revision and tostring(revision) or nil,
        limit = limit and tostring(limit) or nil,
    })
    if not res then
        return nil, err
    end
    res.kvs = decode_kvs(res.kvs)
    return res
end


-- Every key in [key, range_end) at one revision, in pages of page keys:
-- kvs, revision, cluster id.
function _M.range_all(self, key, range_end, page)
    local all, revision, cluster = {}, nil, nil
    local from = key

    while true do
        local res, err = self:range(from, range_end, revision, page)

        if res then
            if not revision then
                revision = tonumber(res.header and res.header.revision)
                cluster = res.header and res.header.cluster_id
                if not revision then
                    return nil, "no revision in etcd's answer"
                end
            end
            local kvs = res.kvs
            for i = 1, #kvs do
                all[#all + 1] = kvs[i]
            end
            if not res.more or #kvs == 0 then
                return all, revision, cluster
            end
            from = kvs[#kvs].key .. "\0"

        -- a page of large values: smaller pages, down to one key
        elseif err == TOO_LARGE and page > 1 then
            page = floor(page / 2)

        else
            return nil, err
        end
    end
end


function _M.put(self, key, value, lease)
    return self:call("/v3/kv/put", {
        key = encode_base64(key),
        value = encode_base64(value),
        lease = lease and tostring(lease) or nil,
    })
end


-- a lease of ttl seconds: its ID (a string)
function _M.grant(self, ttl)
    local res, err = self:call("/v3/lease/grant", { TTL = tostring(ttl) })
    if not res then
        return nil, err
    end
    if not res.ID then
        return nil, res.error or "no lease ID in etcd's answer"
    end
    return res.ID
end


-- one keepalive of a lease: its remaining TTL (0: expired)
function _M.keepalive(self, id)
    local res, err = self:call("/v3/lease/keepalive", { ID = id })
    if not res then
        return nil, err
    end
    local r = res.result or res
    return tonumber(r.TTL) or 0
end


-- the watch: a connection of its own, read as the events come

local watcher = {}
local watcher_mt = { __index = watcher }


-- Watches [key, range_end) from start_revision, with progress
-- notifications, large answers in fragments (result.fragment: more of
-- the same answer follows).  Returns the watcher, whose first message
-- (created, or canceled) next() returns.
function _M.watch(self, key, range_end, start_revision)
    if self.user and not self.token then
        local ok, err = authenticate(self)
        if not ok then
            return nil, err
        end
    end

    local body = json_encode({ create_request = {
        key = encode_base64(key),
        range_end = encode_base64(range_end),
        start_revision = tostring(start_revision),
        progress_notify = true,
        -- a catching-up watch gets up to 1,000 revisions in one answer,
        -- more than the gateway passes (4 MiB): etcd splits it
        fragment = true,
    } })

    local err
    for _ = 1, #self.endpoints do
        local ep = self.endpoints[self.current]
        local sock
        sock, err = connect(self, ep, self.timeout)
        if sock then
            local ok
            ok, err = send_request(self, sock, ep, "/v3/watch", body, true)
            if ok then
                local status, headers = read_head(sock, ep)
                if status == 200 then
                    return setmetatable({
                        sock = sock,
                        ep = ep,
                        stream = stream.new(chunked(headers)),
                        queue = {},
                        qpos = 1,
                    }, watcher_mt)
                end
                if status then
                    local data = read_body(sock, ep, headers)
                    err = etcd_error(status, data)
                else
                    err = headers
                end
            end
            sock:close()
        end
        self.current = self.current % #self.endpoints + 1
    end

    return nil, err
end


-- The next message, waiting at most timeout ms: a table, or nil and
-- "timeout" (the watch goes on), or nil and another error (the watch is
-- over: close it).
function watcher.next(self, timeout)
    while true do
        local q = self.queue
        if self.qpos <= #q then
            local msg = q[self.qpos]
            q[self.qpos] = nil
            self.qpos = self.qpos + 1
            return msg
        end
        self.queue, self.qpos = {}, 1

        if self.stream:finished() then
            return nil, "watch ended by " .. self.ep.url
        end

        self.sock:settimeouts(nil, nil, timeout)
        local data, err = self.sock:receiveany(65536)
        if not data then
            if err == "timeout" then
                return nil, "timeout"
            end
            return nil, "watch on " .. self.ep.url .. ": " .. err
        end

        local msgs
        msgs, err = self.stream:feed(data)
        if not msgs then
            return nil, "watch on " .. self.ep.url .. ": " .. err
        end
        self.queue = msgs
    end
end


function watcher.close(self)
    self.sock:close()
end


-- the kvs of a watch message's events, decoded in place
function _M.decode_events(events)
    for _, ev in ipairs(events) do
        if ev.kv then
            decode_kvs({ ev.kv })
        end
    end
    return events
end


return _M
