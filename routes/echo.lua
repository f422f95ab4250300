-- GET /lua/echo?msg=...: repeats a query argument back, to show how a
-- route reads its request.
local msg = ngx.var.arg_msg
if msg == nil then
    ngx.status = ngx.HTTP_BAD_REQUEST
    ngx.say("missing msg argument")
    return
end
ngx.say(ngx.unescape_uri(msg))
