-- luacheck configuration for routes/ and gateway/lib/
std = "ngx_lua"
max_line_length = 80
