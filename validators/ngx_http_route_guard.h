
/*
 * Copyright (C) The gateway authors
 *
 * What the route guard's files share: the module
 * (ngx_http_route_guard_module.c), its verdict cache
 * (ngx_http_route_guard_cache.c), and the inotify watches that the cache
 * and the modules tree rely on (ngx_http_route_guard_watch.c).
 */


#ifndef _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_
#define _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


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
 * Starts the worker's caches, one per root in "roots", once the inotify
 * connection is up, and frees them.
 */
ngx_int_t ngx_http_route_guard_cache_init(ngx_cycle_t *cycle,
    ngx_array_t *roots);
void ngx_http_route_guard_cache_exit(void);


/*
 * The worker's inotify watches (ngx_http_route_guard_watch.c), one record
 * per watch descriptor: a directory along the routes of a root ("cache"
 * set, "dir" relative to the root, empty for the root itself), or one of
 * the modules tree ("cache" NULL, "dir" its absolute path).
 */

struct inotify_event;

typedef struct {
    ngx_rbtree_node_t               node;   /* key: the watch descriptor */
    ngx_http_route_guard_cache_t   *cache;
    ngx_str_t                       dir;
} ngx_http_route_guard_watch_t;


/*
 * Opens the inotify connection; NGX_DECLINED (logged) when there is none:
 * routes are then checked on every request, and the modules tree is not
 * watched.  exit() closes it and frees every watch.
 */
ngx_int_t ngx_http_route_guard_watch_init(ngx_cycle_t *cycle);
void ngx_http_route_guard_watch_exit(void);

/*
 * Watches the directory "path" for "cache" (NULL: the modules tree); see
 * ngx_http_route_guard_watch.c.  drop() removes every watch of "cache"
 * but the one with descriptor "keep".
 */
ngx_int_t ngx_http_route_guard_watch_add(ngx_http_route_guard_cache_t *cache,
    u_char *path, ngx_str_t *dir, ngx_uint_t follow,
    ngx_http_route_guard_watch_t **watch);
void ngx_http_route_guard_watch_drop(ngx_http_route_guard_cache_t *cache,
    int keep);

/* What the watches hand to the caches: one event, or "events were lost". */
void ngx_http_route_guard_cache_event(ngx_http_route_guard_watch_t *w,
    struct inotify_event *ie);
void ngx_http_route_guard_cache_reset_all(void);

/*
 * The modules tree (NUL-terminated "modules"), watched for the Lua side's
 * gateway.modules, which unloads the user modules that changed: not for
 * the guard's verdicts.
 */
void ngx_http_route_guard_watch_modules(ngx_str_t *modules);

/*
 * For the Lua side, through the FFI: a number that changes whenever
 * anything changes in the modules tree, as this worker has seen it; 0
 * when the tree is not watched.  32 bits, so that Lua gets a number, not
 * a boxed 64-bit integer: only equality matters.
 */
unsigned int ngx_http_route_guard_modules_generation(void);

/*
 * For the Lua side, through the FFI, and for the route metrics
 * (gateway/metrics/) in the log phase: the script accepted for r, ...
 */
int ngx_http_route_guard_ffi_script(ngx_http_request_t *r, u_char **script,
    size_t *len, unsigned int *version);

/* ... the guard's verdict (-1: none) and the accepted route's name ... */
int ngx_http_route_guard_ffi_verdict(ngx_http_request_t *r, u_char **name,
    size_t *len);

/* ... and the accepted script's size and modification time. */
int ngx_http_route_guard_ffi_identity(ngx_http_request_t *r, double *size,
    double *mtime);


#endif /* _NGX_HTTP_ROUTE_GUARD_H_INCLUDED_ */
