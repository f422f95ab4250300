-- luacheck configuration for routes/, modules/ and gateway/lib/
std = "ngx_lua"
max_line_length = 80
