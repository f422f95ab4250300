
/*
 * Copyright (C) The gateway authors
 *
 * Types shared by the route guard module and its verdict cache.
 */


#ifndef _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_
#define _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_ROUTE_GUARD_SUFFIX  ".lua"


typedef enum {
    NGX_HTTP_ROUTE_GUARD_OK = 0,
    NGX_HTTP_ROUTE_GUARD_GRAMMAR,
    NGX_HTTP_ROUTE_GUARD_MISSING,
    NGX_HTTP_ROUTE_GUARD_NOT_REGULAR,
    NGX_HTTP_ROUTE_GUARD_UNREADABLE,
    NGX_HTTP_ROUTE_GUARD_SYMLINK_ESCAPE,
    NGX_HTTP_ROUTE_GUARD_BYTECODE,
    NGX_HTTP_ROUTE_GUARD_MISMATCH,
    NGX_HTTP_ROUTE_GUARD_ERROR
} ngx_http_route_guard_result_e;


typedef struct ngx_http_route_guard_cache_s  ngx_http_route_guard_cache_t;


typedef struct {
    ngx_str_t                       path;   /* realpath, no trailing "/",
                                               NUL-terminated */
    ngx_fd_t                        fd;     /* O_PATH directory */

    /* per worker; NULL where the cache is off or could not start */
    ngx_http_route_guard_cache_t   *cache;
} ngx_http_route_guard_root_t;


/* What the guard found for one name: kept by the cache between requests. */

typedef struct {
    /*
     * one of OK, MISSING, NOT_REGULAR, UNREADABLE, SYMLINK_ESCAPE,
     * MISMATCH, ERROR
     */
    ngx_http_route_guard_result_e   result;
    ngx_str_t                       script;     /* <root>/<name>.lua\0 */

    /* the first byte is ESC: a LuaJIT bytecode dump */
    unsigned                        bytecode:1;

    /*
     * Changes whenever the file may have changed: a new number per worker
     * each time the script is found to be a different file or content.
     */
    uint64_t                        version;

    dev_t                           dev;
    ino_t                           ino;
    off_t                           size;
    struct timespec                 mtime;
    struct timespec                 ctime;
} ngx_http_route_guard_verdict_t;


/*
 * Looks the name up; when the cache holds a verdict still known to be
 * true, copies it into *verdict (its script still points into the cache)
 * and returns NGX_OK.  Otherwise returns NGX_DECLINED: the caller checks
 * the file system and stores what it found.  Before that, the directories
 * along the name are watched, so that no change made after the check can
 * be missed; *watched tells whether that worked, i.e. whether the
 * caller's verdict may be cached.
 */
ngx_int_t ngx_http_route_guard_cache_lookup(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *name, ngx_http_route_guard_verdict_t *verdict,
    ngx_uint_t *watched);

/*
 * Stores a fresh verdict and gives it a version: the old one when the
 * file is the same as before, a new one otherwise.  "cacheable" is false
 * for scripts whose changes the cache cannot see (reached through a
 * symlink, or with more than one hard link): they are checked again on
 * every request, and only their version is kept.
 */
void ngx_http_route_guard_cache_store(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *name, ngx_http_route_guard_verdict_t *verdict,
    ngx_uint_t cacheable);

/*
 * Starts and stops the worker's caches, one per root in "roots", and the
 * watch of the modules tree (NUL-terminated "modules", or empty).
 */
ngx_int_t ngx_http_route_guard_cache_init(ngx_cycle_t *cycle,
    ngx_array_t *roots, ngx_str_t *modules);
void ngx_http_route_guard_cache_exit(void);

/*
 * For the Lua side, through the FFI: a number that changes whenever
 * anything changes in the modules tree, as this worker has seen it; 0
 * when the tree is not watched.  32 bits, so that Lua gets a number, not
 * a boxed 64-bit integer: only equality matters.
 */
unsigned int ngx_http_route_guard_modules_generation(void);

/* For the Lua side, through the FFI: the script accepted for r. */
int ngx_http_route_guard_ffi_script(ngx_http_request_t *r, u_char **script,
    size_t *len, unsigned int *version);


#endif /* _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_ */
