
/*
 * Fuzz targets without libFuzzer: feeds every file of the given
 * directories (by default the suite's corpus and crashers) to the suite's
 * targets, so that the seed corpus and every crasher kept are regression
 * tests of "make test".  Shared by the fuzz suites: each links in a
 * replay_targets.c of its own, which names its directories and calls its
 * targets (their LLVMFuzzerTestOneInput() renamed); a target that
 * disagrees abort()s, which fails the test.  Prints TAP, one test a
 * file; a missing directory is no test.
 */


#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* the suite's: replay_targets.c */
extern char *replay_dirs[];
void replay_input(const uint8_t *data, size_t size);

static int replay_dir(const char *dir);
static int replay_file(const char *path);
static int replay_compare(const void *a, const void *b);


static unsigned int  replay_tests;


int
main(int argc, char **argv)
{
    int  i, failed;

    if (argc < 2) {
        argv = replay_dirs - 1;
        for (argc = 1; replay_dirs[argc - 1] != NULL; argc++) {
            /* void */
        }
    }

    failed = 0;

    for (i = 1; i < argc; i++) {
        failed |= replay_dir(argv[i]);
    }

    printf("1..%u\n", replay_tests);

    return failed;
}


/* the files of a directory, sorted, but for hidden ones */

static int
replay_dir(const char *dir)
{
    int             failed;
    DIR            *d;
    char          **names, path[4096];
    size_t          i, n, size;
    struct dirent  *de;

    d = opendir(dir);
    if (d == NULL) {
        printf("# %s: no such directory\n", dir);
        return 0;
    }

    names = NULL;
    n = 0;
    size = 0;

    while ((de = readdir(d)) != NULL) {

        if (de->d_name[0] == '.') {
            continue;
        }

        if (n == size) {
            size = size ? size * 2 : 64;
            names = realloc(names, size * sizeof(char *));
            if (names == NULL) {
                fprintf(stderr, "out of memory\n");
                exit(2);
            }
        }

        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }

        n++;
    }

    closedir(d);

    if (n > 0) {
        qsort(names, n, sizeof(char *), replay_compare);
    }

    failed = 0;

    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        failed |= replay_file(path);
        free(names[i]);
    }

    free(names);

    return failed;
}


static int
replay_file(const char *path)
{
    long            len;
    FILE           *f;
    unsigned char  *data;

    replay_tests++;

    f = fopen(path, "rb");

    if (f == NULL
        || fseek(f, 0, SEEK_END) != 0
        || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        printf("not ok %u - %s: cannot read it\n", replay_tests, path);
        if (f != NULL) {
            fclose(f);
        }

        return 1;
    }

    /* exactly sized, as libFuzzer would pass it */

    data = malloc(len ? (size_t) len : 1);
    if (data == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    if (fread(data, 1, (size_t) len, f) != (size_t) len) {
        printf("not ok %u - %s: cannot read it\n", replay_tests, path);
        fclose(f);
        free(data);
        return 1;
    }

    fclose(f);

    fflush(stdout);

    replay_input(data, (size_t) len);

    printf("ok %u - %s (%ld bytes)\n", replay_tests, path, len);

    free(data);

    return 0;
}


static int
replay_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}
