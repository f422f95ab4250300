-- An example sandboxed script: /sandbox/hello?name=you
-- luacheck: globals json
local args = ngx.req.get_uri_args()
local name = type(args.name) == "string" and args.name or "world"
ngx.say("hello, ", name:sub(1, 64))
ngx.say(json.encode({ method = ngx.var.request_method }))
