-- Child processes with a deadline, through ngx.pipe: the caller's light
-- thread waits, the process's event loop goes on (the privileged agent
-- runs `nginx -t` and the render script this way).
--
--   local child = require "gateway.child"
--   local ok, output = child.run({ "/usr/sbin/nginx", "-t" }, 30)
--
-- Needs a context that can yield (a timer, a request handler).

local ngx_pipe = require "ngx.pipe"

local ngx = ngx
local concat = table.concat
local tostring = tostring
local now = ngx.now
local update_time = ngx.update_time
local spawn = ngx_pipe.spawn


local _M = { _VERSION = "0.1" }


_M.OUTPUT_MAX = 64 * 1024   -- bytes of a child's output kept

local SIGKILL = 9
local REAP_TIMEOUT = 1000   -- ms to wait for a killed child's exit


-- Runs argv (no shell) with its stderr merged into its stdout, for at
-- most `timeout` seconds in all; environ, when given, is its whole
-- environment ({ "K=V", ... }).  Returns true (exit status 0) or false,
-- and the output (its first OUTPUT_MAX bytes, the rest read and
-- dropped), followed on failure by why: the exit status, the signal, or
-- the deadline.  A child past its deadline is killed and waited for, so
-- none is left behind, running or as a zombie.
function _M.run(argv, timeout, environ)
    local proc, err = spawn(argv, { merge_stderr = true, environ = environ })
    if not proc then
        return false, "cannot run " .. argv[1] .. ": " .. tostring(err)
    end

    local deadline = now() + timeout
    local out, size = {}, 0
    local ok, reason, code

    proc:shutdown("stdin")

    -- one deadline for the whole run: each read and the wait get what is
    -- left of it (ngx.pipe's timeouts are per operation)
    while true do
        update_time()
        local left = (deadline - now()) * 1000
        if left < 1 then
            break
        end

        proc:set_timeouts(nil, left, nil, left)

        local data
        data, err = proc:stdout_read_any(4096)

        if data then
            if size < _M.OUTPUT_MAX then
                out[#out + 1] = data
                size = size + #data
            end

        elseif err == "closed" then
            ok, reason, code = proc:wait()
            if reason ~= "timeout" then
                break
            end
            reason = nil

        elseif err ~= "timeout" then
            reason, code = "error", err
            break
        end
    end

    out = concat(out):sub(1, _M.OUTPUT_MAX)

    if reason == nil then
        proc:kill(SIGKILL)
        proc:set_timeouts(nil, nil, nil, REAP_TIMEOUT)
        proc:wait()
        return false, out .. "\n" .. argv[1] .. " did not finish within "
                      .. timeout .. " s and was killed"
    end

    if ok then
        return true, out
    end

    if reason == "exit" then
        return false, out .. "\n" .. argv[1] .. " exited with status "
                      .. tostring(code)
    end

    if reason == "signal" then
        return false, out .. "\n" .. argv[1] .. " was killed by signal "
                      .. tostring(code)
    end

    return false, out .. "\n" .. argv[1] .. ": " .. tostring(code or reason)
end


return _M
