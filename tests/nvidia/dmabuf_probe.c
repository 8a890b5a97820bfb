/* NV_ESC_EXPORT_TO_DMABUF_FD on /dev/nvidia0: the driver makes an fd, the guest receives it.
 * Prints the fd's flags and what reading it gives. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct export_dmabuf {          /* nv_ioctl_export_to_dma_buf_fd_t, 535 */
    int fd;
    unsigned hClient, totalObjects, numObjects, index;
    unsigned long long totalSize;
    unsigned handles[128];
    unsigned long long offsets[128], sizes[128];
    unsigned status, pad;
};

int main(void) {
    int gpu = open("/dev/nvidia0", O_RDWR);
    if (gpu < 0) { perror("open /dev/nvidia0"); return 1; }
    struct export_dmabuf p;
    memset(&p, 0, sizeof p);
    p.fd = -1;
    p.hClient = 0xc1d00001;
    unsigned long req = (3UL << 30) | ((unsigned long)sizeof p << 16) | ('F' << 8) | 217;
    int r = ioctl(gpu, req, &p);
    char buf[64] = "";
    ssize_t n = p.fd >= 0 ? read(p.fd, buf, sizeof buf - 1) : -1;
    printf("size=%zu ioctl=%d status=%u fd_ok=%d cloexec=%d read=%s", sizeof p, r, p.status, p.fd > 2,
           p.fd >= 0 && (fcntl(p.fd, F_GETFD) & FD_CLOEXEC) != 0, n > 0 ? buf : "-\n");
    return 0;
}
