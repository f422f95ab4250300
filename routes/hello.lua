-- GET /lua/hello
ngx.say("hello, world")
