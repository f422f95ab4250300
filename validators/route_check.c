
/*
 * route-check: the route name grammar on the command line.
 *
 *   route-check [options]             check names read from stdin
 *   route-check [options] --tree DIR  lint a routes directory
 *
 * It uses the very grammar core the nginx module uses (route_name.c), so
 * a name it accepts is a name the gateway accepts, and the other way
 * round.
 *
 * Stdin mode reads one name per line.  A line may carry C-style escapes
 * (\xNN, \\, \n, \r, \t, \0), decoded before the check, so that any byte
 * string, NUL and newline included, can be given.  It prints "ok" or
 * "reject <reason>" for every line.
 *
 * Tree mode walks DIR without following symlinks and prints one line per
 * problem, "<relative path>: <problem>".  Bytes of a path outside the
 * printable ASCII range, and the backslash, are printed escaped the way
 * stdin mode reads them.
 */


#include <sys/types.h>
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route_name.h"


#define ROUTE_CHECK_EXIT_OK         0
#define ROUTE_CHECK_EXIT_REJECTED   1
#define ROUTE_CHECK_EXIT_ERROR      2


typedef struct {
    route_name_limits_t   limits;
    int                   allow_bytecode;
    const char           *root;           /* DIR as given */
    char                 *root_real;      /* realpath(DIR), "/" appended */
    size_t                root_real_len;
    unsigned long         routes_ok;
    unsigned long         problems;
} route_check_tree_t;


static int route_check_stdin(const route_name_limits_t *limits);
static int route_check_unescape(unsigned char *buf, size_t *len);
static int route_check_hex(unsigned char c);

static int route_check_tree(route_check_tree_t *tree);
static void route_check_walk(route_check_tree_t *tree, int fd,
    const char *path);
static void route_check_entry(route_check_tree_t *tree, int dfd,
    const char *name, const char *path);
static void route_check_directory(route_check_tree_t *tree, int dfd,
    const char *name, const char *path);
static void route_check_script(route_check_tree_t *tree, int dfd,
    const char *name, const char *path, int symlink);
static char *route_check_resolve(route_check_tree_t *tree, const char *path);
static int route_check_content(route_check_tree_t *tree, int fd,
    const char *path);
static void route_check_problem(route_check_tree_t *tree, const char *path,
    const char *fmt, ...);
static void route_check_print_path(const char *path);
static int route_check_compare(const void *one, const void *two);
static char *route_check_join(const char *dir, const char *name);
static void *route_check_alloc(size_t size);

static size_t route_check_size(const char *option, const char *arg);
static void route_check_usage(void);


static const char  *route_check_name = "route-check";


/* the long options only: no short option but -h is in the optstring */

static const struct option  route_check_options[] = {
    { "max-length",          required_argument, NULL, 'l' },
    { "max-segments",        required_argument, NULL, 's' },
    { "max-segment-length",  required_argument, NULL, 'g' },
    { "allow-bytecode",      no_argument,       NULL, 'b' },
    { "tree",                required_argument, NULL, 't' },
    { "help",                no_argument,       NULL, 'h' },
    { NULL,                  0,                 NULL, 0 }
};


int
main(int argc, char **argv)
{
    int                  c;
    route_check_tree_t   tree;

    memset(&tree, 0, sizeof(route_check_tree_t));
    tree.limits = route_name_default_limits;

    for ( ;; ) {
        c = getopt_long(argc, argv, "h", route_check_options, NULL);

        if (c == -1) {
            break;
        }

        switch (c) {

        case 'l':
            tree.limits.max_length = route_check_size("--max-length",
                                                      optarg);
            break;

        case 's':
            tree.limits.max_segments = route_check_size("--max-segments",
                                                        optarg);
            break;

        case 'g':
            tree.limits.max_segment_length =
                route_check_size("--max-segment-length", optarg);
            break;

        case 'b':
            tree.allow_bytecode = 1;
            break;

        case 't':
            tree.root = optarg;
            break;

        case 'h':
            route_check_usage();
            return ROUTE_CHECK_EXIT_OK;

        default:
            fprintf(stderr, "Try \"%s --help\".\n", route_check_name);
            return ROUTE_CHECK_EXIT_ERROR;
        }
    }

    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n",
                route_check_name, argv[optind]);
        fprintf(stderr, "Try \"%s --help\".\n", route_check_name);
        return ROUTE_CHECK_EXIT_ERROR;
    }

    if (tree.root != NULL) {
        return route_check_tree(&tree);
    }

    return route_check_stdin(&tree.limits);
}


static int
route_check_stdin(const route_name_limits_t *limits)
{
    int               rejected;
    char             *line;
    size_t            size, len;
    ssize_t           n;
    route_name_rc_e   rc;

    line = NULL;
    size = 0;
    rejected = 0;

    while ((n = getline(&line, &size, stdin)) != -1) {

        len = (size_t) n;

        if (len > 0 && line[len - 1] == '\n') {
            len--;
        }

        if (route_check_unescape((unsigned char *) line, &len) != 0) {
            printf("reject bad escape\n");
            rejected = 1;
            continue;
        }

        rc = route_name_check((unsigned char *) line, len, limits, NULL);

        if (rc == ROUTE_NAME_OK) {
            printf("ok\n");

        } else {
            printf("reject %s\n", route_name_reason(rc));
            rejected = 1;
        }
    }

    free(line);

    if (ferror(stdin)) {
        fprintf(stderr, "%s: reading stdin: %s\n",
                route_check_name, strerror(errno));
        return ROUTE_CHECK_EXIT_ERROR;
    }

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing stdout: %s\n",
                route_check_name, strerror(errno));
        return ROUTE_CHECK_EXIT_ERROR;
    }

    return rejected ? ROUTE_CHECK_EXIT_REJECTED : ROUTE_CHECK_EXIT_OK;
}


/*
 * Decodes \xNN (exactly two hex digits), \\, \n, \r, \t and \0 in place.
 * Returns -1 on any other use of the backslash.
 */

static int
route_check_unescape(unsigned char *buf, size_t *len)
{
    int             hi, lo;
    unsigned char  *p, *q, *end;

    p = buf;
    q = buf;
    end = buf + *len;

    while (p < end) {

        if (*p != '\\') {
            *q++ = *p++;
            continue;
        }

        if (++p == end) {
            return -1;
        }

        switch (*p++) {

        case '\\':
            *q++ = '\\';
            break;

        case 'n':
            *q++ = '\n';
            break;

        case 'r':
            *q++ = '\r';
            break;

        case 't':
            *q++ = '\t';
            break;

        case '0':
            *q++ = '\0';
            break;

        case 'x':
            if (end - p < 2) {
                return -1;
            }

            hi = route_check_hex(p[0]);
            lo = route_check_hex(p[1]);

            if (hi == -1 || lo == -1) {
                return -1;
            }

            *q++ = (unsigned char) (hi << 4 | lo);
            p += 2;
            break;

        default:
            return -1;
        }
    }

    *len = (size_t) (q - buf);

    return 0;
}


static int
route_check_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static int
route_check_tree(route_check_tree_t *tree)
{
    int      fd;
    char    *real;
    size_t   len;

    fd = open(tree->root, O_RDONLY|O_DIRECTORY|O_CLOEXEC);

    if (fd == -1) {
        fprintf(stderr, "%s: cannot open directory \"%s\": %s\n",
                route_check_name, tree->root, strerror(errno));
        return ROUTE_CHECK_EXIT_ERROR;
    }

    real = realpath(tree->root, NULL);

    if (real == NULL) {
        fprintf(stderr, "%s: cannot resolve \"%s\": %s\n",
                route_check_name, tree->root, strerror(errno));
        (void) close(fd);
        return ROUTE_CHECK_EXIT_ERROR;
    }

    /* "/srv/routes" becomes "/srv/routes/", and "/" stays "/" */

    len = strlen(real);

    tree->root_real = route_check_alloc(len + 2);
    memcpy(tree->root_real, real, len);

    if (len == 0 || real[len - 1] != '/') {
        tree->root_real[len++] = '/';
    }

    tree->root_real[len] = '\0';
    tree->root_real_len = len;

    free(real);

    route_check_walk(tree, fd, NULL);

    free(tree->root_real);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing stdout: %s\n",
                route_check_name, strerror(errno));
        return ROUTE_CHECK_EXIT_ERROR;
    }

    fprintf(stderr, "%lu routes ok, %lu problems\n",
            tree->routes_ok, tree->problems);

    return tree->problems ? ROUTE_CHECK_EXIT_REJECTED : ROUTE_CHECK_EXIT_OK;
}


/*
 * Walks the directory open on "fd" (which it closes), "path" being its
 * path relative to the root, NULL for the root itself.  The entries are
 * sorted, so that the report does not depend on the file system.
 */

static void
route_check_walk(route_check_tree_t *tree, int fd, const char *path)
{
    DIR             *dir;
    char           **names, **p;
    char            *child;
    size_t           n, nalloc, i;
    struct dirent   *de;

    dir = fdopendir(fd);

    if (dir == NULL) {
        route_check_problem(tree, path, "unreadable (%s)", strerror(errno));
        (void) close(fd);
        return;
    }

    names = NULL;
    n = 0;
    nalloc = 0;

    for ( ;; ) {
        errno = 0;
        de = readdir(dir);

        if (de == NULL) {
            if (errno != 0) {
                route_check_problem(tree, path, "unreadable (%s)",
                                    strerror(errno));
            }

            break;
        }

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }

        if (n == nalloc) {
            nalloc = nalloc ? 2 * nalloc : 32;

            p = realloc(names, nalloc * sizeof(char *));
            if (p == NULL) {
                fprintf(stderr, "%s: out of memory\n", route_check_name);
                exit(ROUTE_CHECK_EXIT_ERROR);
            }

            names = p;
        }

        names[n] = route_check_alloc(strlen(de->d_name) + 1);
        strcpy(names[n], de->d_name);
        n++;
    }

    if (n > 0) {
        qsort(names, n, sizeof(char *), route_check_compare);
    }

    for (i = 0; i < n; i++) {
        child = route_check_join(path, names[i]);

        route_check_entry(tree, dirfd(dir), names[i], child);

        free(child);
        free(names[i]);
    }

    free(names);
    (void) closedir(dir);
}


static void
route_check_entry(route_check_tree_t *tree, int dfd, const char *name,
    const char *path)
{
    struct stat  st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
        route_check_problem(tree, path, "cannot stat (%s)", strerror(errno));
        return;
    }

    if (S_ISDIR(st.st_mode)) {
        route_check_directory(tree, dfd, name, path);

    } else if (S_ISREG(st.st_mode)) {
        route_check_script(tree, dfd, name, path, 0);

    } else if (S_ISLNK(st.st_mode)) {
        route_check_script(tree, dfd, name, path, 1);

    } else {
        route_check_problem(tree, path, "not a regular file");
    }
}


static void
route_check_directory(route_check_tree_t *tree, int dfd, const char *name,
    const char *path)
{
    int               fd;
    route_name_rc_e   rc;

    rc = route_name_check((const unsigned char *) name, strlen(name),
                          &tree->limits, NULL);

    if (rc != ROUTE_NAME_OK) {
        route_check_problem(tree, path,
                            "directory name is not a valid segment (%s)",
                            route_name_reason(rc));
        return;
    }

    /*
     * A directory that is already too deep or too long as a route prefix
     * is reported once, and not entered: nothing in it can be a route.
     */

    rc = route_name_check((const unsigned char *) path, strlen(path),
                          &tree->limits, NULL);

    if (rc != ROUTE_NAME_OK) {
        route_check_problem(tree, path, "reject %s", route_name_reason(rc));
        return;
    }

    fd = openat(dfd, name, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC);

    if (fd == -1) {
        route_check_problem(tree, path, "unreadable (%s)", strerror(errno));
        return;
    }

    route_check_walk(tree, fd, path);
}


static void
route_check_script(route_check_tree_t *tree, int dfd, const char *name,
    const char *path, int symlink)
{
    int               fd, failed;
    char             *target;
    size_t            len;
    route_name_rc_e   rc;

    len = strlen(name);

    if (len < ROUTE_NAME_SUFFIX_LEN
        || strcmp(name + len - ROUTE_NAME_SUFFIX_LEN, ROUTE_NAME_SUFFIX)
           != 0)
    {
        route_check_problem(tree, path,
                            "not a route script (no " ROUTE_NAME_SUFFIX
                            " suffix)");
        return;
    }

    target = NULL;

    if (symlink) {
        target = route_check_resolve(tree, path);
        if (target == NULL) {
            return;
        }
    }

    failed = 0;

    rc = route_name_check((const unsigned char *) path,
                          strlen(path) - ROUTE_NAME_SUFFIX_LEN,
                          &tree->limits, NULL);

    if (rc != ROUTE_NAME_OK) {
        route_check_problem(tree, path, "reject %s", route_name_reason(rc));
        failed = 1;
    }

    /* O_NONBLOCK: should it have become a FIFO meanwhile, do not hang */

    if (target != NULL) {
        fd = open(target, O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC);

    } else {
        fd = openat(dfd, name,
                    O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC);
    }

    if (fd == -1) {
        route_check_problem(tree, path, "unreadable (%s)", strerror(errno));
        failed = 1;

    } else {
        if (route_check_content(tree, fd, path) != 0) {
            failed = 1;
        }

        (void) close(fd);
    }

    free(target);

    if (!failed) {
        tree->routes_ok++;
    }
}


/*
 * A symlink is allowed only when it resolves to a regular file inside the
 * root.  Returns the resolved path, or NULL when the link was reported.
 */

static char *
route_check_resolve(route_check_tree_t *tree, const char *path)
{
    int           err;
    char         *full, *real;
    size_t        len;
    struct stat   st;

    full = route_check_join(tree->root, path);

    real = realpath(full, NULL);
    err = errno;

    free(full);

    if (real == NULL) {
        if (err == ENOENT) {
            route_check_problem(tree, path, "dangling symlink");

        } else {
            route_check_problem(tree, path, "unresolvable symlink (%s)",
                                strerror(err));
        }

        return NULL;
    }

    /* the root itself is inside, but it is a directory, reported below */

    len = strlen(real);

    if (strncmp(real, tree->root_real, tree->root_real_len) != 0
        && !(len + 1 == tree->root_real_len
             && strncmp(real, tree->root_real, len) == 0))
    {
        route_check_problem(tree, path, "symlink escapes the root");
        free(real);
        return NULL;
    }

    if (stat(real, &st) == -1) {
        route_check_problem(tree, path, "unresolvable symlink (%s)",
                            strerror(errno));
        free(real);
        return NULL;
    }

    if (!S_ISREG(st.st_mode)) {
        route_check_problem(tree, path,
                            "symlink target is not a regular file");
        free(real);
        return NULL;
    }

    return real;
}


static int
route_check_content(route_check_tree_t *tree, int fd, const char *path)
{
    ssize_t        n;
    struct stat    st;
    unsigned char  c;

    if (fstat(fd, &st) == -1) {
        route_check_problem(tree, path, "unreadable (%s)", strerror(errno));
        return -1;
    }

    if (!S_ISREG(st.st_mode)) {
        route_check_problem(tree, path, "not a regular file");
        return -1;
    }

    n = read(fd, &c, 1);

    if (n == -1) {
        route_check_problem(tree, path, "unreadable (%s)", strerror(errno));
        return -1;
    }

    if (n == 1 && c == ROUTE_NAME_BYTECODE_MARK && !tree->allow_bytecode) {
        route_check_problem(tree, path, "bytecode (first byte is ESC)");
        return -1;
    }

    return 0;
}


static void
route_check_problem(route_check_tree_t *tree, const char *path,
    const char *fmt, ...)
{
    va_list  args;

    route_check_print_path(path != NULL ? path : ".");

    fputs(": ", stdout);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    fputc('\n', stdout);

    tree->problems++;
}


/*
 * A file name may hold any byte but "/" and NUL: a newline in it must not
 * forge a line of the report.
 */

static void
route_check_print_path(const char *path)
{
    const unsigned char  *p;

    for (p = (const unsigned char *) path; *p != '\0'; p++) {

        if (*p == '\\') {
            fputs("\\\\", stdout);

        } else if (*p < 0x20 || *p >= 0x7f) {
            printf("\\x%02x", *p);

        } else {
            fputc(*p, stdout);
        }
    }
}


static int
route_check_compare(const void *one, const void *two)
{
    return strcmp(*(char * const *) one, *(char * const *) two);
}


static char *
route_check_join(const char *dir, const char *name)
{
    char    *path;
    size_t   dlen, nlen;

    if (dir == NULL) {
        dir = "";
    }

    dlen = strlen(dir);
    nlen = strlen(name);

    path = route_check_alloc(dlen + 1 + nlen + 1);

    memcpy(path, dir, dlen);

    if (dlen > 0 && dir[dlen - 1] != '/') {
        path[dlen++] = '/';
    }

    memcpy(path + dlen, name, nlen + 1);

    return path;
}


static void *
route_check_alloc(size_t size)
{
    void  *p;

    p = malloc(size);

    if (p == NULL) {
        fprintf(stderr, "%s: out of memory\n", route_check_name);
        exit(ROUTE_CHECK_EXIT_ERROR);
    }

    return p;
}


/* a usage error exits */

static size_t
route_check_size(const char *option, const char *arg)
{
    char                *end;
    unsigned long long   n;

    if (arg[0] >= '0' && arg[0] <= '9') {
        errno = 0;
        n = strtoull(arg, &end, 10);

        if (errno == 0 && *end == '\0' && n <= (size_t) -1) {
            return (size_t) n;
        }
    }

    fprintf(stderr, "%s: %s wants a non-negative integer, not \"%s\"\n",
            route_check_name, option, arg);

    exit(ROUTE_CHECK_EXIT_ERROR);
}


static void
route_check_usage(void)
{
    printf(
        "usage: %s [options]              check names from stdin\n"
        "       %s [options] --tree DIR   lint a routes directory\n"
        "\n"
        "Stdin: one name per line; \\xNN, \\\\, \\n, \\r, \\t and \\0 are"
        " decoded.\n"
        "Prints \"ok\" or \"reject <reason>\" per line.\n"
        "\n"
        "Options:\n"
        "  --max-length N          at most N bytes in all (default %zu)\n"
        "  --max-segments N        at most N segments (default %zu)\n"
        "  --max-segment-length N  at most N bytes a segment (default %zu)\n"
        "  --allow-bytecode        with --tree: accept bytecode scripts\n"
        "  -h, --help              this text\n"
        "\n"
        "Exit status: 0 all ok, 1 something rejected, 2 usage or I/O"
        " error.\n",
        route_check_name, route_check_name,
        route_name_default_limits.max_length,
        route_name_default_limits.max_segments,
        route_name_default_limits.max_segment_length);
}
