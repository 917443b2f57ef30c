/*
 * The workload driver of ci/bench.sh: makes the layer stack and times the workloads with as
 * little overhead of its own as possible (one process, no allocation per file, the clock read
 * only around the work). Build: cc -O2 -o driver driver.c
 *
 *   driver gen  DIR FILES DIRS BIG_MIB   make DIR/layer0..2 and DIR/{paths,files}.list; the
 *                                        big file is layer0/d00/big.bin
 *   driver walk ROOT                     readdir every directory below ROOT (d_type, no stat)
 *   driver lstat ROOT LIST               lstat ROOT/PATH for every line of LIST
 *   driver read ROOT LIST                open, read to the end and close ROOT/PATH for each line
 *   driver big FILE                      read FILE sequentially in 1 MiB reads
 *
 * Every timing mode prints one line: "<nanoseconds> <entries> <bytes> <errors>".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "driver: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* xorshift64*: the same stack on every machine for the same arguments. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void mkdirs(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) die("mkdir", buf);
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) && errno != EEXIST) die("mkdir", buf);
}

static void write_file(const char *path, size_t size, unsigned char fill) {
    static unsigned char block[1 << 20];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("create", path);
    memset(block, fill, sizeof block);
    while (size > 0) {
        size_t n = size < sizeof block ? size : sizeof block;
        if (write(fd, block, n) != (ssize_t)n) die("write", path);
        size -= n;
    }
    close(fd);
}

/* Small file sizes 100 B .. 16 KiB, skewed small like real trees (log-uniform). */
static size_t small_size(void) {
    double u = (double)(rnd() >> 11) / (double)(1ull << 53);
    double lo = 100.0, hi = 16384.0;
    return (size_t)(lo * pow(hi / lo, u));
}

static int gen(const char *dir, long files, long dirs, long big_mib) {
    char path[PATH_MAX], list[PATH_MAX];
    /* Directories: 10 at the top, 10 below each, the rest spread one level further down. */
    long top = dirs < 10 ? dirs : 10;
    long mid = (dirs - top) < top * 10 ? (dirs - top) : top * 10;
    long leaf = dirs - top - mid;
    char **dpath = calloc((size_t)dirs, sizeof *dpath);
    long n = 0;
    for (long t = 0; t < top; t++) {
        if (asprintf(&dpath[n++], "d%02ld", t) < 0) return 1;
    }
    for (long m = 0; m < mid; m++) {
        if (asprintf(&dpath[n++], "%s/m%02ld", dpath[m % top], m / top) < 0) return 1;
    }
    for (long l = 0; l < leaf; l++) {
        if (asprintf(&dpath[n++], "%s/l%03ld", dpath[top + l % (mid ? mid : 1)], l) < 0) return 1;
    }
    for (long i = 0; i < dirs; i++) {
        snprintf(path, sizeof path, "%s/layer0/%s", dir, dpath[i]);
        mkdirs(path);
    }
    snprintf(list, sizeof list, "%s/files.list", dir);
    FILE *fl = fopen(list, "w");
    snprintf(list, sizeof list, "%s/paths.list", dir);
    FILE *pl = fopen(list, "w");
    if (!fl || !pl) die("create", list);
    long overridden = 0;
    for (long i = 0; i < files; i++) {
        const char *d = dpath[i % dirs];
        char rel[PATH_MAX];
        snprintf(rel, sizeof rel, "%s/f%05ld.dat", d, i);
        snprintf(path, sizeof path, "%s/layer0/%s", dir, rel);
        write_file(path, small_size(), 'a');
        /* About 10% are overridden: half by layer1, half by layer2, with other sizes. */
        uint64_t r = rnd() % 100;
        if (r < 10) {
            int layer = r < 5 ? 1 : 2;
            snprintf(path, sizeof path, "%s/layer%d/%s", dir, layer, d);
            mkdirs(path);
            snprintf(path, sizeof path, "%s/layer%d/%s", dir, layer, rel);
            write_file(path, small_size(), (unsigned char)('a' + layer));
            overridden++;
        }
        fprintf(fl, "%s\n", rel);
        fprintf(pl, "%s\n", rel);
    }
    /* One relative symlink per directory, to a file beside it. */
    for (long i = 0; i < dirs && i < files; i++) {
        char rel[PATH_MAX], target[64];
        snprintf(rel, sizeof rel, "%s/link", dpath[i]);
        snprintf(target, sizeof target, "f%05ld.dat", i);
        snprintf(path, sizeof path, "%s/layer0/%s", dir, rel);
        if (symlink(target, path) && errno != EEXIST) die("symlink", path);
        fprintf(pl, "%s\n", rel);
    }
    snprintf(path, sizeof path, "%s/layer2", dir);
    mkdirs(path);
    snprintf(path, sizeof path, "%s/layer1", dir);
    mkdirs(path);
    /* Not directly under the root: see "big file" in ci/bench.sh. */
    snprintf(path, sizeof path, "%s/layer0/%s/big.bin", dir, dpath[0]);
    write_file(path, (size_t)big_mib << 20, 'b');
    fclose(fl);
    fclose(pl);
    printf("%ld files (%ld overridden), %ld directories, %ld symlinks, big file %ld MiB\n", files,
           overridden, dirs, dirs < files ? dirs : files, big_mib);
    return 0;
}

static long walk_count, walk_errors;

static void walk_dir(int dfd) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        walk_errors++;
        close(dfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        walk_count++;
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISDIR(st.st_mode);
        }
        if (is_dir) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (sub < 0)
                walk_errors++;
            else
                walk_dir(sub);
        }
    }
    closedir(d);
}

/* Reads LIST into one buffer of NUL-terminated relative paths. */
static char *load_list(const char *list, long *count) {
    FILE *f = fopen(list, "r");
    if (!f) die("open", list);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) die("read", list);
    fclose(f);
    buf[size] = 0;
    *count = 0;
    for (long i = 0; i < size; i++) {
        if (buf[i] == '\n') {
            buf[i] = 0;
            (*count)++;
        }
    }
    return buf;
}

int main(int argc, char **argv) {
    if (argc >= 6 && !strcmp(argv[1], "gen"))
        return gen(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]));
    static char buf[1 << 20];
    char path[PATH_MAX];
    long entries = 0, errors = 0;
    uint64_t bytes = 0, start, end;
    if (argc == 3 && !strcmp(argv[1], "walk")) {
        start = now_ns();
        int fd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (fd < 0) die("open", argv[2]);
        walk_dir(fd);
        end = now_ns();
        entries = walk_count;
        errors = walk_errors;
    } else if (argc == 4 && (!strcmp(argv[1], "lstat") || !strcmp(argv[1], "read"))) {
        long count;
        char *names = load_list(argv[3], &count);
        size_t root_len = strlen(argv[2]);
        memcpy(path, argv[2], root_len);
        path[root_len++] = '/';
        int do_read = argv[1][0] == 'r';
        start = now_ns();
        char *name = names;
        for (long i = 0; i < count; i++) {
            size_t len = strlen(name);
            memcpy(path + root_len, name, len + 1);
            name += len + 1;
            entries++;
            if (!do_read) {
                struct stat st;
                if (lstat(path, &st))
                    errors++;
                else
                    bytes += (uint64_t)st.st_size;
                continue;
            }
            int fd = open(path, O_RDONLY);
            if (fd < 0) {
                errors++;
                continue;
            }
            ssize_t n;
            while ((n = read(fd, buf, sizeof buf)) > 0) bytes += (uint64_t)n;
            if (n < 0) errors++;
            close(fd);
        }
        end = now_ns();
    } else if (argc == 3 && !strcmp(argv[1], "big")) {
        start = now_ns();
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) die("open", argv[2]);
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) bytes += (uint64_t)n;
        if (n < 0) errors++;
        close(fd);
        end = now_ns();
        entries = 1;
    } else {
        fprintf(stderr, "usage: driver gen DIR FILES DIRS BIG_MIB | walk ROOT | lstat ROOT LIST | "
                        "read ROOT LIST | big FILE\n");
        return 2;
    }
    printf("%llu %ld %llu %ld\n", (unsigned long long)(end - start), entries,
           (unsigned long long)bytes, errors);
    return 0;
}
