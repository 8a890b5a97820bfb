/* A UVM command from a two-threaded guest: UVM_INITIALIZE on /dev/nvidia-uvm, issued with the
 * raw syscall instruction so that the argument registers can be checked afterwards (the kernel
 * keeps every register but rax, rcx and r11). A second thread spins meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile unsigned long spins;
static volatile int stop;

static void *spin(void *arg) {
    (void)arg;
    while (!stop)
        spins++;
    return NULL;
}

int main(void) {
    int uvm = open("/dev/nvidia-uvm", O_RDWR);
    if (uvm < 0) { perror("open /dev/nvidia-uvm"); return 1; }
    pthread_t t;
    pthread_create(&t, NULL, spin, NULL);
    while (spins < 1000)
        ;
    struct { unsigned long long flags; unsigned rmStatus, pad; } params = {0, 0x5a5a, 0};
    long ret;
    register long rdi asm("rdi") = uvm;
    register long rsi asm("rsi") = 0x30000001;  /* UVM_INITIALIZE */
    register long rdx asm("rdx") = (long)&params;
    asm volatile("syscall" : "=a"(ret), "+r"(rdi), "+r"(rsi), "+r"(rdx) : "a"(16L) : "rcx", "r11", "memory");
    int kept = rdi == uvm && rsi == 0x30000001 && rdx == (long)&params;
    unsigned long before = spins;
    usleep(20000);
    int spinning = spins > before;
    stop = 1;
    pthread_join(t, NULL);
    printf("ioctl=%ld regs_kept=%d params_kept=%d spinner_runs_after=%d\n", ret, kept,
           params.flags == 0 && params.rmStatus == 0x5a5a, spinning);
    return 0;
}
