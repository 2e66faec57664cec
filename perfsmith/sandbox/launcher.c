/* The sandbox launcher, compiled on first use (the same program as launcher.py, which
 * serves where no C compiler is found): the parent of the untrusted command. It lowers
 * the rlimits named in PERFSMITH_RLIMITS ("NAME=soft:hard,...") in the child only, runs
 * the command, and reports "wait-status cpu-seconds peak-rss-kb" on the file descriptor
 * PERFSMITH_REPORT_FD (closed in the child) or to the file PERFSMITH_REPORT_PATH. With
 * PERFSMITH_NO_ASLR=1 the command runs without address-space randomization. The launcher
 * is not dumpable: a command of the same uid cannot open its memory.
 *
 * With PERFSMITH_UID (the process backend as root) the launcher starts as root in fresh
 * namespaces, its children in a new PID namespace: its child is that namespace's init,
 * which mounts a /proc of the namespace, starts the command as PERFSMITH_UID (parent-death
 * signal set after the uid change, seccomp filter from PERFSMITH_SECCOMP_FD), reaps every
 * orphan, writes the report itself (root: out of the command's reach) and, when the
 * command ends, ends the namespace (every process left in it dies). The launcher and init
 * die with their parents, so nothing outlives perfsmith. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
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

static void fail(const char *what) {
    fprintf(stderr, "sandbox: %s: %s\n", what, strerror(errno));
    _exit(126);
}

/* Dies when the process that started it is gone (read end of a pipe it holds open). */
static void die_with_parent(int alive_fd) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct pollfd p = {alive_fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) _exit(126);
}

static void install_seccomp(int fd) {
    static unsigned char prog[65536];
    size_t n = 0;
    ssize_t got;
    while ((got = read(fd, prog + n, sizeof prog - n)) > 0) n += (size_t)got;
    close(fd);
    if (n == 0 || n % sizeof(struct sock_filter)) { errno = EINVAL; fail("seccomp filter"); }
    struct sock_fprog fprog = {(unsigned short)(n / sizeof(struct sock_filter)),
                               (struct sock_filter *)prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("no_new_privs");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0)) fail("seccomp");
}

static void report(int report_fd, const char *path, int status, struct rusage *ru) {
    char buf[128];
    double cpu = ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
                 ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
    int n = snprintf(buf, sizeof buf, "%d %.6f %ld", status, cpu, ru->ru_maxrss);
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
        if (fd >= 0) { if (write(fd, buf, n) < 0) {} close(fd); }
    } else if (report_fd >= 0) {
        if (write(report_fd, buf, n) < 0) {}
    }
}

static int exit_code(int status) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* PID 1 of the run's namespace: start the command as `uid`, reap everything, report. */
static int init_main(char **argv, uid_t uid, int seccomp_fd, int report_fd, int alive_fd,
                     char *limits, int fixed_layout) {
    die_with_parent(alive_fd);
    close(alive_fd);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) fail("mount /proc");
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        close(report_fd);
        if (limits) apply_limits(limits);
        if (setgroups(0, NULL) || setgid(uid) || setuid(uid)) fail("drop privileges");
        /* After the uid change, which clears the parent-death signal. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != 1) _exit(126);
        if (fixed_layout) personality(ADDR_NO_RANDOMIZE);
        if (seccomp_fd >= 0) install_seccomp(seccomp_fd);
        execvp(argv[0], argv);
        fprintf(stderr, "sandbox: cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (seccomp_fd >= 0) close(seccomp_fd);
    int status = 0, command_status = -1;
    struct rusage ru, command_ru;
    memset(&command_ru, 0, sizeof command_ru);
    for (;;) {
        pid_t got = wait4(-1, &status, 0, &ru);
        if (got < 0) {
            if (errno == EINTR) continue;
            break; /* ECHILD: nothing left */
        }
        if (got == pid) {
            command_status = status;
            command_ru = ru;
            kill(-1, SIGKILL); /* every process left in the namespace */
        }
    }
    if (command_status < 0) return 126;
    report(report_fd, NULL, command_status, &command_ru);
    return exit_code(command_status);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    prctl(PR_SET_DUMPABLE, 0);
    const char *fd_s = getenv("PERFSMITH_REPORT_FD");
    int report_fd = fd_s ? atoi(fd_s) : -1;
    char *path = getenv("PERFSMITH_REPORT_PATH");
    path = path ? strdup(path) : NULL;
    char *limits = getenv("PERFSMITH_RLIMITS");
    limits = limits ? strdup(limits) : NULL;
    const char *no_aslr = getenv("PERFSMITH_NO_ASLR");
    int fixed_layout = no_aslr && !strcmp(no_aslr, "1");
    const char *uid_s = getenv("PERFSMITH_UID");
    const char *seccomp_s = getenv("PERFSMITH_SECCOMP_FD");
    int confined = uid_s != NULL;
    uid_t uid = uid_s ? (uid_t)strtoul(uid_s, NULL, 10) : 0;
    int seccomp_fd = seccomp_s ? atoi(seccomp_s) : -1;
    unsetenv("PERFSMITH_NO_ASLR");
    unsetenv("PERFSMITH_REPORT_FD");
    unsetenv("PERFSMITH_REPORT_PATH");
    unsetenv("PERFSMITH_RLIMITS");
    unsetenv("PERFSMITH_UID");
    unsetenv("PERFSMITH_SECCOMP_FD");
    if (confined) {
        if (uid == 0) { errno = EINVAL; fail("PERFSMITH_UID"); }
        int alive[2];
        if (pipe2(alive, O_CLOEXEC)) fail("pipe");
        pid_t init = fork();
        if (init < 0) return 126;
        if (init == 0) {
            close(alive[1]);
            _exit(init_main(argv + 1, uid, seccomp_fd, report_fd, alive[0], limits,
                            fixed_layout));
        }
        close(alive[0]);
        if (seccomp_fd >= 0) close(seccomp_fd);
        if (report_fd >= 0) close(report_fd);
        int status = 0;
        while (waitpid(init, &status, 0) < 0) {
            if (errno != EINTR) return 126;
        }
        _exit(exit_code(status));
    }
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
    report(report_fd, path, status, &ru);
    _exit(exit_code(status));
}
