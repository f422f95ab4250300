-- The body of an etcd watch response (POST /v3/watch through etcd's
-- HTTP/JSON gateway), decoded as it arrives: HTTP/1.1 chunked framing
-- around newline-delimited JSON messages ({"result": {...}} or
-- {"error": {...}}).  Bytes may come in any pieces: a message split
-- across chunks or reads, several in one, a chunk header cut anywhere.
--
--   local stream = require "gateway.etcd.stream"
--   local s = stream.new(chunked)
--   local msgs, err = s:feed(bytes)    -- a table of decoded messages
--
-- A message larger than max_message, a malformed chunk header or a line
-- that is not JSON is an error; the stream is then unusable.

local cjson = require "cjson.safe"

local find = string.find
local sub = string.sub
local tonumber = tonumber
local concat = table.concat
local setmetatable = setmetatable
local type = type
local json_decode = cjson.decode


local _M = { _VERSION = "0.1" }

local mt = { __index = _M }


-- a watch message holds at most one revision's events; the values are
-- bounded by the store's request limit (1.5 MiB by default) in base64
_M.MAX_MESSAGE = 8 * 1024 * 1024

local MAX_CHUNK_HEADER = 64


function _M.new(chunked, max_message)
    return setmetatable({
        chunked = chunked,
        max = max_message or _M.MAX_MESSAGE,
        raw = "",           -- framing bytes not yet decoded
        left = 0,           -- bytes of the current chunk still to come
        crlf = false,       -- a chunk's trailing CRLF is expected
        parts = {},         -- the current message's pieces
        size = 0,           -- their length
        done = false,       -- the last chunk was seen
    }, mt)
end


-- adds body bytes to the current message, splitting at newlines
local function take(self, data, msgs)
    local pos = 1
    while true do
        local nl = find(data, "\n", pos, true)
        if not nl then
            local rest = sub(data, pos)
            if rest ~= "" then
                self.size = self.size + #rest
                if self.size > self.max then
                    return nil, "watch message too large"
                end
                self.parts[#self.parts + 1] = rest
            end
            return true
        end

        local piece = sub(data, pos, nl - 1)
        self.size = self.size + #piece
        if self.size > self.max then
            return nil, "watch message too large"
        end
        self.parts[#self.parts + 1] = piece

        local line = concat(self.parts)
        self.parts, self.size = {}, 0

        if find(line, "%S") then
            local msg, err = json_decode(line)
            if msg == nil or type(msg) ~= "table" then
                return nil, "bad watch message: " .. (err or "not an object")
            end
            msgs[#msgs + 1] = msg
        end

        pos = nl + 1
    end
end


-- Decodes bytes; returns the messages they completed (possibly none),
-- or nil and an error.
function _M.feed(self, bytes)
    local msgs = {}

    if not self.chunked then
        local ok, err = take(self, bytes, msgs)
        if not ok then
            return nil, err
        end
        return msgs
    end

    local raw = self.raw .. bytes
    local pos = 1

    while pos <= #raw do
        if self.crlf then
            if #raw - pos + 1 < 2 then
                break
            end
            if sub(raw, pos, pos + 1) ~= "\r\n" then
                return nil, "bad chunk: no CRLF after its data"
            end
            pos = pos + 2
            self.crlf = false

        elseif self.left > 0 then
            local n = #raw - pos + 1
            if n > self.left then
                n = self.left
            end
            local ok, err = take(self, sub(raw, pos, pos + n - 1), msgs)
            if not ok then
                return nil, err
            end
            pos = pos + n
            self.left = self.left - n
            if self.left == 0 then
                self.crlf = true
            end

        elseif self.done then
            -- trailers after the last chunk: ignored
            pos = #raw + 1

        else
            local eol = find(raw, "\r\n", pos, true)
            if not eol then
                if #raw - pos + 1 > MAX_CHUNK_HEADER then
                    return nil, "bad chunk header"
                end
                break
            end
            local digits = sub(raw, pos, eol - 1):match("^%x+")
            local size = digits and tonumber(digits, 16)
            if size == nil or eol - pos > MAX_CHUNK_HEADER then
                return nil, "bad chunk header"
            end
            pos = eol + 2
            if size == 0 then
                self.done = true
            else
                self.left = size
            end
        end
    end

    self.raw = sub(raw, pos)
    return msgs
end


-- true once the last chunk arrived (the server ended the response)
function _M.finished(self)
    return self.done
end


return _M
