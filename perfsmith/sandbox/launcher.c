/* The sandbox launcher, compiled on first use (the same program as launcher.py, which
 * serves where no C compiler is found): the parent of the untrusted command. It lowers
 * the rlimits named in PERFSMITH_RLIMITS ("NAME=soft:hard,...") in the child only, runs
 * the command, and reports "wait-status cpu-seconds peak-rss-kb" on the file descriptor
 * PERFSMITH_REPORT_FD (closed in the child) or to the file PERFSMITH_REPORT_PATH. With
 * PERFSMITH_NO_ASLR=1 the command runs without address-space randomization. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int resource_of(const char *name) {
    if (!strcmp(name, "RLIMIT_CPU")) return RLIMIT_CPU;
    if (!strcmp(name, "RLIMIT_AS")) return RLIMIT_AS;
    if (!strcmp(name, "RLIMIT_FSIZE")) return RLIMIT_FSIZE;
    if (!strcmp(name, "RLIMIT_NOFILE")) return RLIMIT_NOFILE;
    if (!strcmp(name, "RLIMIT_CORE")) return RLIMIT_CORE;
    if (!strcmp(name, "RLIMIT_NPROC")) return RLIMIT_NPROC;
    return -1;
}

static void apply_limits(char *spec) {
    for (char *item = strtok(spec, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '='), *colon = eq ? strchr(eq, ':') : NULL;
        if (!eq || !colon) continue;
        *eq = 0;
        int res = resource_of(item);
        if (res < 0) continue;
        struct rlimit rl = {strtoull(eq + 1, NULL, 10), strtoull(colon + 1, NULL, 10)};
        setrlimit(res, &rl);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *fd_s = getenv("PERFSMITH_REPORT_FD");
    int report_fd = fd_s ? atoi(fd_s) : -1;
    char *path = getenv("PERFSMITH_REPORT_PATH");
    path = path ? strdup(path) : NULL;
    char *limits = getenv("PERFSMITH_RLIMITS");
    limits = limits ? strdup(limits) : NULL;
    const char *no_aslr = getenv("PERFSMITH_NO_ASLR");
    int fixed_layout = no_aslr && !strcmp(no_aslr, "1");
    unsetenv("PERFSMITH_NO_ASLR");
    unsetenv("PERFSMITH_REPORT_FD");
    unsetenv("PERFSMITH_REPORT_PATH");
    unsetenv("PERFSMITH_RLIMITS");
    pid_t pid = fork();
    if (pid < 0) return 126;
    if (pid == 0) {
        if (report_fd >= 0) close(report_fd);
        if (limits) apply_limits(limits);
        /* Repeatable instruction counts: no address-space randomization for the command. */
        if (fixed_layout) personality(ADDR_NO_RANDOMIZE);
        execvp(argv[1], argv + 1);
        fprintf(stderr, "sandbox: cannot run '%s': %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) return 126;
    }
    char buf[128];
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    int n = snprintf(buf, sizeof buf, "%d %.6f %ld", status, cpu, ru.ru_maxrss);
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
        if (fd >= 0) { if (write(fd, buf, n) < 0) {} close(fd); }
    } else if (report_fd >= 0) {
        if (write(report_fd, buf, n) < 0) {}
    }
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    _exit(128 + WTERMSIG(status));
}
