-- GET /lua/v1/greet?name=...: uses the module modules/greeting.lua.
local greeting = require "greeting"

ngx.say(greeting.hello(ngx.var.arg_name))
