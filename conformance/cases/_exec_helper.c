/* Helper program exec'd by the process case (installed as
 * /conformance/_exec_helper).  It reports what it received on stdout:
 *
 *   _exec_helper argv ARGS...   -> "argc=N argv=a|b|c"
 *   _exec_helper env NAME       -> "NAME=value" or "NAME unset"
 *   _exec_helper fd N...        -> "open closed ..." (one word per fd N)
 *   _exec_helper cwd            -> the working directory
 *   _exec_helper signals        -> dispositions/mask of SIGUSR1/SIGUSR2/SIGTERM
 *   _exec_helper exit N         -> exits with status N
 *   _exec_helper exe            -> /proc/self/exe and the task's name (PR_GET_NAME)
 *
 * Invoked as a #! interpreter its argv[1] is the optional interpreter
 * argument or the script path; anything unrecognised prints argv.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void print_argv(int argc, char **argv)
{
    printf("argc=%d argv=", argc);
    for (int i = 0; i < argc; i++)
        printf("%s%s", i ? "|" : "", argv[i]);
    printf("\n");
}

static const char *disposition(int sig)
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return sa.sa_handler == SIG_IGN ? "ign" : sa.sa_handler == SIG_DFL ? "dfl" : "handler";
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "argv")) {
        print_argv(argc, argv);
    } else if (!strcmp(mode, "env") && argc > 2) {
        const char *v = getenv(argv[2]);
        if (v)
            printf("%s=%s\n", argv[2], v);
        else
            printf("%s unset\n", argv[2]);
    } else if (!strcmp(mode, "fd")) {
        for (int i = 2; i < argc; i++) {
            int fd = atoi(argv[i]);
            printf("%s%s", i > 2 ? " " : "", fcntl(fd, F_GETFD) >= 0 ? "open" : "closed");
        }
        printf("\n");
    } else if (!strcmp(mode, "exe")) {
        char exe[4096] = "", name[17] = "";
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        prctl(PR_GET_NAME, name);
        printf("exe=%s name=%s\n", exe, name);
    } else if (!strcmp(mode, "cwd")) {
        char buf[4096];
        printf("%s\n", getcwd(buf, sizeof buf) ? buf : "<error>");
    } else if (!strcmp(mode, "signals")) {
        sigset_t mask;
        sigprocmask(SIG_BLOCK, NULL, &mask);
        printf("usr1=%s usr2=%s term=%s usr2_blocked=%d term_blocked=%d\n",
               disposition(SIGUSR1), disposition(SIGUSR2), disposition(SIGTERM),
               sigismember(&mask, SIGUSR2), sigismember(&mask, SIGTERM));
    } else if (!strcmp(mode, "exit") && argc > 2) {
        fflush(stdout);
        _exit(atoi(argv[2]));
    } else {
        print_argv(argc, argv);
    }
    return 0;
}
