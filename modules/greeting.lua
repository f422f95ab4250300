-- An example module for routes: require "greeting" loads
-- modules/greeting.lua.
-- Edit it while the gateway runs: the next request uses the new version.

local _M = {}


function _M.hello(name)
    return "hello, " .. (name or "world")
end


return _M
