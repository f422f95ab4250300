
/*
 * Copyright (C) The gateway authors
 *
 * The route guard: checks a route name (any complex value: $1, $arg_x,
 * a capture of $request_uri ...) against the safe-path grammar of
 * route_name.h, confines it beneath one routes root with openat2(2) and
 * RESOLVE_BENEATH, and hands the confined path of a regular, readable,
 * non-bytecode script to the content handler through $route_script.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/syscall.h>
#include <linux/openat2.h>

#include "ngx_http_route_guard.h"
#include "route_name.h"


#define NGX_HTTP_ROUTE_GUARD_LOG_NAME     64
#define NGX_HTTP_ROUTE_GUARD_OPEN_TRIES   3


typedef struct {
    ngx_array_t                     roots;  /* ngx_http_route_guard_root_t * */
    ngx_str_t                       modules;    /* realpath, NUL-terminated */
    ngx_flag_t                      enabled;
} ngx_http_route_guard_main_conf_t;


typedef struct {
    ngx_http_complex_value_t       *name;
    ngx_http_route_guard_root_t    *root;

    ngx_int_t                       max_length;
    ngx_int_t                       max_segments;
    ngx_int_t                       max_segment_length;
    route_name_limits_t             limits;

    ngx_flag_t                      bytecode;
    ngx_flag_t                      cache;

    ngx_int_t                       invalid_status;
    ngx_int_t                       missing_status;
    ngx_int_t                       unusable_status;
} ngx_http_route_guard_loc_conf_t;


typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       script;
    uint64_t                        version;
    off_t                           size;
    struct timespec                 mtime;
    ngx_http_route_guard_result_e   result;
    ngx_int_t                       rc;
} ngx_http_route_guard_ctx_t;


static ngx_int_t ngx_http_route_guard_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_route_guard_check(ngx_http_request_t *r,
    ngx_http_route_guard_loc_conf_t *rglcf, ngx_http_route_guard_ctx_t *ctx);
static void ngx_http_route_guard_find(ngx_http_request_t *r,
    ngx_http_route_guard_root_t *root, ngx_str_t *name,
    ngx_http_route_guard_verdict_t *v, ngx_uint_t *cacheable);
static void ngx_http_route_guard_open(ngx_http_request_t *r,
    ngx_http_route_guard_root_t *root, ngx_str_t *name,
    ngx_http_route_guard_verdict_t *v, ngx_uint_t *cacheable);
static void ngx_http_route_guard_log_invalid(ngx_http_request_t *r,
    ngx_str_t *name, route_name_rc_e rc, size_t offset);
static void ngx_http_route_guard_log_unusable(ngx_http_request_t *r,
    ngx_http_route_guard_ctx_t *ctx);
static ngx_int_t ngx_http_route_guard_script_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_route_guard_version_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_route_guard_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static char *ngx_http_route_guard(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_route_guard_root(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_route_guard_close_root(void *data);
static char *ngx_http_route_guard_modules(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_route_guard_generation_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_route_guard_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_route_guard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_route_guard_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_route_guard_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_route_guard_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_route_guard_init_process(ngx_cycle_t *cycle);
static void ngx_http_route_guard_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_route_guard_length_bounds = {
    ngx_conf_check_num_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_http_route_guard_segments_bounds = {
    ngx_conf_check_num_bounds, 1, 64
};

/* a segment plus ".lua" must fit a file name (NAME_MAX) */
static ngx_conf_num_bounds_t  ngx_http_route_guard_segment_bounds = {
    ngx_conf_check_num_bounds, 1,
    NAME_MAX - ROUTE_NAME_SUFFIX_LEN
};

static ngx_conf_num_bounds_t  ngx_http_route_guard_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_http_route_guard_commands[] = {

    { ngx_string("route_guard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_route_guard,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, name),
      NULL },

    { ngx_string("route_guard_root"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_route_guard_root,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("route_guard_modules"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_route_guard_modules,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("route_guard_max_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, max_length),
      &ngx_http_route_guard_length_bounds },

    { ngx_string("route_guard_max_segments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, max_segments),
      &ngx_http_route_guard_segments_bounds },

    { ngx_string("route_guard_max_segment_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, max_segment_length),
      &ngx_http_route_guard_segment_bounds },

    { ngx_string("route_guard_bytecode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, bytecode),
      NULL },

    { ngx_string("route_guard_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, cache),
      NULL },

    { ngx_string("route_guard_invalid_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, invalid_status),
      &ngx_http_route_guard_status_bounds },

    { ngx_string("route_guard_missing_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, missing_status),
      &ngx_http_route_guard_status_bounds },

    { ngx_string("route_guard_unusable_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_route_guard_loc_conf_t, unusable_status),
      &ngx_http_route_guard_status_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_route_guard_module_ctx = {
    ngx_http_route_guard_add_variables,    /* preconfiguration */
    ngx_http_route_guard_init,             /* postconfiguration */

    ngx_http_route_guard_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_route_guard_create_loc_conf,  /* create location configuration */
    ngx_http_route_guard_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_route_guard_module = {
    NGX_MODULE_V1,
    &ngx_http_route_guard_module_ctx,      /* module context */
    ngx_http_route_guard_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_route_guard_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_route_guard_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_route_guard_vars[] = {

    { ngx_string("route_script"), NULL,
      ngx_http_route_guard_script_variable,
      offsetof(ngx_http_route_guard_ctx_t, script),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("route_name"), NULL,
      ngx_http_route_guard_script_variable,
      offsetof(ngx_http_route_guard_ctx_t, name),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("route_version"), NULL,
      ngx_http_route_guard_version_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("route_modules_generation"), NULL,
      ngx_http_route_guard_generation_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("route_guard_result"), NULL,
      ngx_http_route_guard_result_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* indexed by ngx_http_route_guard_result_e */
static ngx_str_t  ngx_http_route_guard_results[] = {
    ngx_string("ok"),
    ngx_string("grammar"),
    ngx_string("missing"),
    ngx_string("not_regular"),
    ngx_string("unreadable"),
    ngx_string("symlink_escape"),
    ngx_string("bytecode"),
    ngx_string("mismatch"),
    ngx_string("error")
};


static ngx_int_t
ngx_http_route_guard_handler(ngx_http_request_t *r)
{
    ngx_http_route_guard_ctx_t       *ctx;
    ngx_http_route_guard_loc_conf_t  *rglcf;

    rglcf = ngx_http_get_module_loc_conf(r, ngx_http_route_guard_module);

    if (rglcf->name == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_route_guard_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_route_guard_module);

        ctx->rc = ngx_http_route_guard_check(r, rglcf, ctx);
    }

    return ctx->rc;
}


static ngx_int_t
ngx_http_route_guard_check(ngx_http_request_t *r,
    ngx_http_route_guard_loc_conf_t *rglcf, ngx_http_route_guard_ctx_t *ctx)
{
    size_t                          offset;
    ngx_str_t                       name;
    ngx_uint_t                      cacheable, tries;
    route_name_rc_e                 rc;
    ngx_http_route_guard_verdict_t  v;

    if (ngx_http_complex_value(r, rglcf->name, &name) != NGX_OK) {
        ctx->result = NGX_HTTP_ROUTE_GUARD_ERROR;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = route_name_check(name.data, name.len, &rglcf->limits, &offset);

    if (rc != ROUTE_NAME_OK) {
        ngx_http_route_guard_log_invalid(r, &name, rc, offset);
        ctx->result = NGX_HTTP_ROUTE_GUARD_GRAMMAR;
        return rglcf->invalid_status;
    }

    ctx->name = name;

    /* a mismatch once may be a deploy racing the check: look again */

    tries = 2;

    do {
        if (rglcf->cache && rglcf->root->cache != NULL) {
            ngx_http_route_guard_find(r, rglcf->root, &name, &v, &cacheable);

        } else {
            ngx_http_route_guard_open(r, rglcf->root, &name, &v, NULL);
            v.version = 0;
        }

    } while (v.result == NGX_HTTP_ROUTE_GUARD_MISMATCH && --tries);

    ctx->script = v.script;
    ctx->version = v.version;
    ctx->size = v.size;
    ctx->mtime = v.mtime;
    ctx->result = v.result;

    if (v.result == NGX_HTTP_ROUTE_GUARD_OK && v.bytecode && !rglcf->bytecode)
    {
        ctx->result = NGX_HTTP_ROUTE_GUARD_BYTECODE;
    }

    switch (ctx->result) {

    case NGX_HTTP_ROUTE_GUARD_OK:
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "route guard: route \"%V\" is \"%V\" version %uL",
                       &ctx->name, &ctx->script, ctx->version);
        return NGX_DECLINED;

    case NGX_HTTP_ROUTE_GUARD_MISSING:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "route guard: no script for route \"%V\"", &ctx->name);
        return rglcf->missing_status;

    case NGX_HTTP_ROUTE_GUARD_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:
        ngx_http_route_guard_log_unusable(r, ctx);
        return rglcf->unusable_status;
    }
}


/*
 * The verdict from the worker's cache when it holds a current one, from
 * the file system otherwise (then kept for the next requests).
 */

static void
ngx_http_route_guard_find(ngx_http_request_t *r,
    ngx_http_route_guard_root_t *root, ngx_str_t *name,
    ngx_http_route_guard_verdict_t *v, ngx_uint_t *cacheable)
{
    u_char     *p;
    ngx_uint_t  watched;

    if (ngx_http_route_guard_cache_lookup(root->cache, name, v, &watched)
        == NGX_OK)
    {
        /* the cache's copy goes with the next change: keep our own */

        p = ngx_pnalloc(r->pool, v->script.len + 1);
        if (p == NULL) {
            v->result = NGX_HTTP_ROUTE_GUARD_ERROR;
            return;
        }

        ngx_memcpy(p, v->script.data, v->script.len + 1);
        v->script.data = p;

        return;
    }

    *cacheable = watched;

    ngx_http_route_guard_open(r, root, name, v, cacheable);

    if (v->result != NGX_HTTP_ROUTE_GUARD_MISSING
        && v->result != NGX_HTTP_ROUTE_GUARD_MISMATCH
        && v->result != NGX_HTTP_ROUTE_GUARD_ERROR)
    {
        ngx_http_route_guard_cache_store(root->cache, name, v, *cacheable);
    }
}


/*
 * Opens <root>/<name>.lua beneath the root without ever leaving it
 * (RESOLVE_BENEATH refuses absolute symlinks and ".." past the root), and
 * without blocking (O_NONBLOCK: a FIFO named like a route must not hang
 * the worker).  Only a regular file the worker can read is OK; whether it
 * is bytecode is noted for the location to decide.
 *
 * With "cacheable" the name is first resolved with no symlink at all, the
 * only kind of path whose changes the cache's watches see; *cacheable is
 * cleared when that fails for a symlink or the file has other hard links.
 */

static void
ngx_http_route_guard_open(ngx_http_request_t *r,
    ngx_http_route_guard_root_t *root, ngx_str_t *name,
    ngx_http_route_guard_verdict_t *v, ngx_uint_t *cacheable)
{
    u_char           *p, *relative, first;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_uint_t        tries;
    struct stat       sb;
    struct open_how   how;

    ngx_memzero(v, sizeof(ngx_http_route_guard_verdict_t));

    p = ngx_pnalloc(r->pool, root->path.len + 1 + name->len
                             + sizeof(ROUTE_NAME_SUFFIX));
    if (p == NULL) {
        v->result = NGX_HTTP_ROUTE_GUARD_ERROR;
        return;
    }

    v->script.data = p;

    p = ngx_cpymem(p, root->path.data, root->path.len);
    *p++ = '/';
    relative = p;
    p = ngx_cpymem(p, name->data, name->len);
    p = ngx_cpymem(p, ROUTE_NAME_SUFFIX,
                   sizeof(ROUTE_NAME_SUFFIX));

    v->script.len = p - 1 - v->script.data;

    ngx_memzero(&how, sizeof(struct open_how));
    how.flags = O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS;

    if (cacheable != NULL && *cacheable) {
        how.resolve |= RESOLVE_NO_SYMLINKS;
    }

    /* EAGAIN: a concurrent rename raced with a ".." in a symlink target */

    tries = NGX_HTTP_ROUTE_GUARD_OPEN_TRIES;

    for ( ;; ) {
        fd = syscall(SYS_openat2, root->fd, relative, &how, sizeof(how));

        if (fd != -1) {
            break;
        }

        err = ngx_errno;

        if (err == NGX_ELOOP && (how.resolve & RESOLVE_NO_SYMLINKS)) {
            how.resolve &= ~RESOLVE_NO_SYMLINKS;
            *cacheable = 0;
            continue;
        }

        if (err == NGX_EAGAIN && --tries) {
            continue;
        }

        switch (err) {

        case NGX_ENOENT:
        case NGX_ENOTDIR:
        case NGX_ELOOP:
            v->result = NGX_HTTP_ROUTE_GUARD_MISSING;
            return;

        case EXDEV:
            v->result = NGX_HTTP_ROUTE_GUARD_SYMLINK_ESCAPE;
            return;

        case NGX_EACCES:
        case NGX_EPERM:
            v->result = NGX_HTTP_ROUTE_GUARD_UNREADABLE;
            return;

        case ENXIO:
        case ENODEV:
        case NGX_EAGAIN:
            v->result = NGX_HTTP_ROUTE_GUARD_NOT_REGULAR;
            return;

        default:
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, err,
                          "route guard: openat2() of route \"%V\" failed",
                          name);
            v->result = NGX_HTTP_ROUTE_GUARD_ERROR;
            return;
        }
    }

    if (fstat(fd, &sb) == -1) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "route guard: fstat() of route \"%V\" failed", name);
        (void) close(fd);
        v->result = NGX_HTTP_ROUTE_GUARD_ERROR;
        return;
    }

    v->dev = sb.st_dev;
    v->ino = sb.st_ino;
    v->size = sb.st_size;
    v->mtime = sb.st_mtim;
    v->ctime = sb.st_ctim;

    if (cacheable != NULL && sb.st_nlink > 1) {
        *cacheable = 0;
    }

    if (!S_ISREG(sb.st_mode)) {
        (void) close(fd);
        v->result = NGX_HTTP_ROUTE_GUARD_NOT_REGULAR;
        return;
    }

    n = pread(fd, &first, 1, 0);

    if (n == -1) {
        err = ngx_errno;
        (void) close(fd);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, err,
                      "route guard: pread() of route \"%V\" failed", name);
        v->result = NGX_HTTP_ROUTE_GUARD_UNREADABLE;
        return;
    }

    v->bytecode = (n == 1 && first == ROUTE_NAME_BYTECODE_MARK);

    if (close(fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                      "route guard: close() of route \"%V\" failed", name);
    }

    /*
     * The content handler opens the script again, by its path: the path
     * must lead to the file just checked beneath the root's descriptor.
     * It would not if the root directory had been replaced since the
     * configuration was loaded, or the file were replaced right now.
     */

    if (stat((char *) v->script.data, &sb) == -1
        || sb.st_dev != v->dev
        || sb.st_ino != v->ino)
    {
        v->result = NGX_HTTP_ROUTE_GUARD_MISMATCH;
        return;
    }

    v->result = NGX_HTTP_ROUTE_GUARD_OK;
}


/*
 * Invalid names come from clients: they are logged at "info" so that a
 * client cannot flood the error log, shortened, and with every byte
 * outside printable ASCII escaped so that they cannot forge log lines.
 */

static void
ngx_http_route_guard_log_invalid(ngx_http_request_t *r, ngx_str_t *name,
    route_name_rc_e rc, size_t offset)
{
    u_char      *p, *last, *src, *end;
    ngx_uint_t   truncated;
    u_char       buf[NGX_HTTP_ROUTE_GUARD_LOG_NAME * 4];

    static u_char  hex[] = "0123456789abcdef";

    if (r->connection->log->log_level < NGX_LOG_INFO) {
        return;
    }

    p = buf;
    last = buf + sizeof(buf);
    src = name->data;
    end = name->data + ngx_min(name->len, NGX_HTTP_ROUTE_GUARD_LOG_NAME);
    truncated = (name->len > NGX_HTTP_ROUTE_GUARD_LOG_NAME);

    while (src < end && p + 4 <= last) {

        if (*src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\') {
            *p++ = *src++;
            continue;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[*src >> 4];
        *p++ = hex[*src++ & 0xf];
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "route guard: invalid route name (%s) at offset %uz: "
                  "\"%*s\"%s",
                  route_name_reason(rc), offset, p - buf, buf,
                  truncated ? "..." : "");
}


/*
 * An unusable script is the operator's mistake and goes to "error", but
 * any client can ask for it again and again: at most one line a second
 * per worker, with a count of the lines left out.
 */

static void
ngx_http_route_guard_log_unusable(ngx_http_request_t *r,
    ngx_http_route_guard_ctx_t *ctx)
{
    char        *why;
    time_t       now;

    static time_t      last;
    static ngx_uint_t  suppressed;

    now = ngx_time();

    if (now == last) {
        suppressed++;
        return;
    }

    last = now;

    switch (ctx->result) {

    case NGX_HTTP_ROUTE_GUARD_NOT_REGULAR:
        why = "is not a regular file";
        break;

    case NGX_HTTP_ROUTE_GUARD_UNREADABLE:
        why = "is not readable";
        break;

    case NGX_HTTP_ROUTE_GUARD_SYMLINK_ESCAPE:
        why = "escapes the routes root";
        break;

    case NGX_HTTP_ROUTE_GUARD_BYTECODE:
        why = "is bytecode and route_guard_bytecode is off";
        break;

    default: /* NGX_HTTP_ROUTE_GUARD_MISMATCH */
        why = "has a path that does not lead to the checked file "
              "(was the routes root replaced? reload nginx)";
        break;
    }

    if (suppressed) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "route guard: route \"%V\" %s "
                      "(%ui similar lines suppressed)",
                      &ctx->name, why, suppressed);
        suppressed = 0;

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "route guard: route \"%V\" %s", &ctx->name, why);
    }
}


static ngx_int_t
ngx_http_route_guard_script_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s;
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL || ctx->result != NGX_HTTP_ROUTE_GUARD_OK) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_guard_version_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p;
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL
        || ctx->result != NGX_HTTP_ROUTE_GUARD_OK
        || ctx->version == 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", ctx->version) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_guard_generation_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%ui", (ngx_uint_t)
                         ngx_http_route_guard_modules_generation())
             - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_guard_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s;
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = &ngx_http_route_guard_results[ctx->result];

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static char *
ngx_http_route_guard(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_route_guard_main_conf_t  *rgmcf;

    rgmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_route_guard_module);
    rgmcf->enabled = 1;

    return ngx_http_set_complex_value_slot(cf, cmd, conf);
}


/*
 * The root is resolved once, at configuration time: its real path is what
 * $route_script is built from, and its descriptor, opened with O_PATH, is
 * what every lookup is confined beneath.  The descriptor lives as long as
 * the cycle that opened it.
 */

static char *
ngx_http_route_guard_root(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_route_guard_loc_conf_t *rglcf = conf;

    long                               fd;
    ngx_str_t                         *value, name;
    struct stat                        sb;
    struct open_how                    how;
    ngx_pool_cleanup_t                *cln;
    ngx_http_route_guard_root_t       *root, **slot;
    ngx_http_route_guard_main_conf_t  *rgmcf;
    char                               real[PATH_MAX];

    if (rglcf->root != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (name.len == 0) {
        return "requires a directory";
    }

    if (ngx_conf_full_name(cf->cycle, &name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (realpath((char *) name.data, real) == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "route_guard_root \"%V\" cannot be resolved",
                           &name);
        return NGX_CONF_ERROR;
    }

    root = ngx_pcalloc(cf->pool, sizeof(ngx_http_route_guard_root_t));
    if (root == NULL) {
        return NGX_CONF_ERROR;
    }

    /* NUL-terminated: the cache gives it to inotify_add_watch() */

    root->path.len = ngx_strlen(real);
    root->path.data = ngx_pnalloc(cf->pool, root->path.len + 1);
    if (root->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(root->path.data, real, root->path.len + 1);

    /* "/" as the root would make every path "//name.lua"; refuse it */

    if (root->path.len == 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "route_guard_root must not be \"/\"");
        return NGX_CONF_ERROR;
    }

    root->fd = open(real, O_PATH|O_DIRECTORY|O_CLOEXEC);

    if (root->fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "route_guard_root \"%s\" is not a directory",
                           real);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->cycle->pool, 0);
    if (cln == NULL) {
        (void) close(root->fd);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_route_guard_close_root;
    cln->data = root;

    /* fail now, not on the first request, where openat2() is missing */

    ngx_memzero(&how, sizeof(struct open_how));
    how.flags = O_PATH|O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH;

    fd = syscall(SYS_openat2, root->fd, ".", &how, sizeof(how));

    if (fd == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "route_guard_root \"%s\": openat2() with "
                           "RESOLVE_BENEATH failed (Linux 5.6 or newer "
                           "is required)", real);
        return NGX_CONF_ERROR;
    }

    (void) close(fd);

    if (fstat(root->fd, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "route_guard_root \"%s\" is not a directory",
                           real);
        return NGX_CONF_ERROR;
    }

    rgmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_route_guard_module);

    slot = ngx_array_push(&rgmcf->roots);
    if (slot == NULL) {
        return NGX_CONF_ERROR;
    }

    *slot = root;
    rglcf->root = root;

    return NGX_CONF_OK;
}


/*
 * The modules tree that routes require from: watched by every worker so
 * that the Lua side learns of a change without looking at the files.
 */

static char *
ngx_http_route_guard_modules(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_route_guard_main_conf_t *rgmcf = conf;

    ngx_str_t    *value, name;
    struct stat   sb;
    char          real[PATH_MAX];

    if (rgmcf->modules.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (name.len == 0) {
        return "requires a directory";
    }

    if (ngx_conf_full_name(cf->cycle, &name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (realpath((char *) name.data, real) == NULL
        || stat(real, &sb) == -1 || !S_ISDIR(sb.st_mode))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "route_guard_modules \"%V\" is not a directory",
                           &name);
        return NGX_CONF_ERROR;
    }

    rgmcf->modules.len = ngx_strlen(real);
    rgmcf->modules.data = ngx_pnalloc(cf->pool, rgmcf->modules.len + 1);
    if (rgmcf->modules.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(rgmcf->modules.data, real, rgmcf->modules.len + 1);

    return NGX_CONF_OK;
}


static void
ngx_http_route_guard_close_root(void *data)
{
    ngx_http_route_guard_root_t  *root = data;

    if (close(root->fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "route guard: close() of root \"%V\" failed",
                      &root->path);
    }
}


static void *
ngx_http_route_guard_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_route_guard_main_conf_t  *rgmcf;

    rgmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_route_guard_main_conf_t));
    if (rgmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rgmcf->modules = { 0, NULL };
     *     rgmcf->enabled = 0;
     */

    if (ngx_array_init(&rgmcf->roots, cf->pool, 2,
                       sizeof(ngx_http_route_guard_root_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return rgmcf;
}


static void *
ngx_http_route_guard_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_route_guard_loc_conf_t  *rglcf;

    rglcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_route_guard_loc_conf_t));
    if (rglcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rglcf->limits = { 0, 0, 0 };
     */

    rglcf->name = NGX_CONF_UNSET_PTR;
    rglcf->root = NGX_CONF_UNSET_PTR;
    rglcf->max_length = NGX_CONF_UNSET;
    rglcf->max_segments = NGX_CONF_UNSET;
    rglcf->max_segment_length = NGX_CONF_UNSET;
    rglcf->bytecode = NGX_CONF_UNSET;
    rglcf->cache = NGX_CONF_UNSET;
    rglcf->invalid_status = NGX_CONF_UNSET;
    rglcf->missing_status = NGX_CONF_UNSET;
    rglcf->unusable_status = NGX_CONF_UNSET;

    return rglcf;
}


static char *
ngx_http_route_guard_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_route_guard_loc_conf_t *prev = parent;
    ngx_http_route_guard_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->name, prev->name, NULL);
    ngx_conf_merge_ptr_value(conf->root, prev->root, NULL);

    ngx_conf_merge_value(conf->max_length, prev->max_length,
                         ROUTE_NAME_MAX_LENGTH);
    ngx_conf_merge_value(conf->max_segments, prev->max_segments,
                         ROUTE_NAME_MAX_SEGMENTS);
    ngx_conf_merge_value(conf->max_segment_length, prev->max_segment_length,
                         ROUTE_NAME_MAX_SEGMENT_LENGTH);

    ngx_conf_merge_value(conf->bytecode, prev->bytecode, 0);
    ngx_conf_merge_value(conf->cache, prev->cache, 1);

    ngx_conf_merge_value(conf->invalid_status, prev->invalid_status,
                         NGX_HTTP_BAD_REQUEST);
    ngx_conf_merge_value(conf->missing_status, prev->missing_status,
                         NGX_HTTP_NOT_FOUND);
    ngx_conf_merge_value(conf->unusable_status, prev->unusable_status,
                         NGX_HTTP_SERVICE_UNAVAILABLE);

    conf->limits.max_length = conf->max_length;
    conf->limits.max_segments = conf->max_segments;
    conf->limits.max_segment_length = conf->max_segment_length;

    if (conf->name != NULL && conf->root == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"route_guard\" requires \"route_guard_root\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_route_guard_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_route_guard_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_guard_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_route_guard_main_conf_t  *rgmcf;

    rgmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_route_guard_module);

    if (!rgmcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_route_guard_handler;

    return NGX_OK;
}


/*
 * For the Lua side, through the FFI: what the guard accepted for this
 * request, without the cost of two variable lookups by name.  Returns
 * NGX_OK, or NGX_DECLINED when the guard did not accept a script.  The
 * version is truncated to 32 bits so that Lua gets a plain number.
 */

int
ngx_http_route_guard_ffi_script(ngx_http_request_t *r, u_char **script,
    size_t *len, unsigned int *version)
{
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL || ctx->result != NGX_HTTP_ROUTE_GUARD_OK) {
        return NGX_DECLINED;
    }

    *script = ctx->script.data;
    *len = ctx->script.len;
    *version = (unsigned int) ctx->version;

    return NGX_OK;
}


/*
 * For the Lua side, through the FFI, in any phase after the guard's: its
 * verdict on r (an ngx_http_route_guard_result_e), or -1 when the guard
 * did not run for r; the route name when the guard accepted a script.
 */

int
ngx_http_route_guard_ffi_verdict(ngx_http_request_t *r, u_char **name,
    size_t *len)
{
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL) {
        return -1;
    }

    if (ctx->result == NGX_HTTP_ROUTE_GUARD_OK) {
        *name = ctx->name.data;
        *len = ctx->name.len;
    }

    return ctx->result;
}


/*
 * For the Lua side, through the FFI: the size and modification time the
 * guard saw when it last checked the accepted script (the file of this
 * version); doubles, since they are for display.
 */

int
ngx_http_route_guard_ffi_identity(ngx_http_request_t *r, double *size,
    double *mtime)
{
    ngx_http_route_guard_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_guard_module);

    if (ctx == NULL || ctx->result != NGX_HTTP_ROUTE_GUARD_OK) {
        return NGX_DECLINED;
    }

    *size = (double) ctx->size;
    *mtime = (double) ctx->mtime.tv_sec + ctx->mtime.tv_nsec / 1e9;

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_guard_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t                          rc;
    ngx_http_route_guard_main_conf_t  *rgmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rgmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_route_guard_module);

    if (rgmcf == NULL || (!rgmcf->enabled && rgmcf->modules.len == 0)) {
        return NGX_OK;
    }

    /* without inotify, no verdict is cached and no module is unloaded */

    rc = ngx_http_route_guard_watch_init(cycle);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : rc;
    }

    if (ngx_http_route_guard_cache_init(cycle, &rgmcf->roots) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rgmcf->modules.len) {
        ngx_http_route_guard_watch_modules(&rgmcf->modules);
    }

    return NGX_OK;
}


static void
ngx_http_route_guard_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_route_guard_watch_exit();
    ngx_http_route_guard_cache_exit();
}
