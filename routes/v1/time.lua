-- GET /lua/v1/time: the server's clock, as seconds since the epoch and
-- as an HTTP date.
ngx.header["Cache-Control"] = "no-store"
ngx.say(ngx.time(), " ", ngx.http_time(ngx.time()))
