"""The files and directories a system needs that no package in a minimal set ships (base-files
and base-passwd are left out on purpose), and the dynamic linker's cache."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import DiskFull, ImageError

# Debian's static accounts (base-passwd's masters), so that packages which expect them (nginx's
# www-data, say) find them; root's shell is /bin/sh, the shell most images have if any.
_USERS = ("root:0:0:root:/root:/bin/sh", "daemon:1:1:daemon:/usr/sbin", "bin:2:2:bin:/bin", "sys:3:3:sys:/dev",
          "sync:4:65534:sync:/bin:/bin/sync", "games:5:60:games:/usr/games", "man:6:12:man:/var/cache/man",
          "lp:7:7:lp:/var/spool/lpd", "mail:8:8:mail:/var/mail", "news:9:9:news:/var/spool/news",
          "uucp:10:10:uucp:/var/spool/uucp", "proxy:13:13:proxy:/bin", "www-data:33:33:www-data:/var/www",
          "backup:34:34:backup:/var/backups", "list:38:38:Mailing List Manager:/var/list", "irc:39:39:ircd:/run/ircd",
          "_apt:42:65534::/nonexistent", "nobody:65534:65534:nobody:/nonexistent")
_GROUPS = ("root:0 daemon:1 bin:2 sys:3 adm:4 tty:5 disk:6 lp:7 mail:8 news:9 uucp:10 man:12 proxy:13 kmem:15 "
           "dialout:20 fax:21 voice:22 cdrom:24 floppy:25 tape:26 sudo:27 audio:29 dip:30 www-data:33 backup:34 "
           "operator:37 list:38 irc:39 src:40 shadow:42 utmp:43 video:44 sasl:45 plugdev:46 staff:50 games:60 "
           "users:100 nogroup:65534")


def _passwd_line(spec: str) -> str:
    name, uid, gid, gecos, home, *shell = spec.split(":")
    return f"{name}:x:{uid}:{gid}:{gecos}:{home}:{shell[0] if shell else '/usr/sbin/nologin'}\n"


PASSWD = "".join(map(_passwd_line, _USERS))
GROUP = "".join(f"{g.split(':')[0]}:x:{g.split(':')[1]}:\n" for g in _GROUPS.split())
SHADOW = "".join(f"{u.split(':')[0]}:*:19000:0:99999:7:::\n" for u in _USERS)
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
NSSWITCH = ("passwd:         files\ngroup:          files\nshadow:         files\n"
            "hosts:          files dns\nnetworks:       files\n"
            "protocols:      files\nservices:       files\nethers:         files\nrpc:            files\n")
LD_SO_CONF = "include /etc/ld.so.conf.d/*.conf\n"

_DIRS = (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("home", 0o755), ("proc", 0o555),
         ("sys", 0o555), ("dev", 0o755), ("run", 0o755), ("etc", 0o755), ("var/lib", 0o755),
         ("var/log", 0o755), ("usr/local/bin", 0o755), ("mnt", 0o755), ("opt", 0o755), ("srv", 0o755))


def _write_absent(path: Path, text: str, mode: int = 0o644) -> None:
    # A package's own copy (if one is ever included) wins over ours.
    if path.exists() or path.is_symlink():
        return
    path.write_text(text)
    os.chmod(path, mode)


def add_skeleton(root: Path, hostname: str = "linuxabi") -> None:
    for rel, mode in _DIRS:
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)
    etc = root / "etc"
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("hosts", HOSTS), ("nsswitch.conf", NSSWITCH),
                       ("hostname", hostname + "\n"), ("ld.so.conf", LD_SO_CONF)):
        _write_absent(etc / name, text)
    _write_absent(etc / "shadow", SHADOW, 0o640)
    mtab = etc / "mtab"
    if not (mtab.exists() or mtab.is_symlink()):
        mtab.symlink_to("../proc/self/mounts")


def _ldconfig() -> str:
    found = shutil.which("ldconfig", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise ImageError("ldconfig not found (it comes with libc-bin) — it builds the image's /etc/ld.so.cache")
    return found


def run_ldconfig(root: Path) -> None:
    """``ldconfig -r ROOT``: the host's ldconfig chroots into the image and reads its
    /etc/ld.so.conf, writing /etc/ld.so.cache and the libraries' soname links there."""
    r = subprocess.run([_ldconfig(), "-r", str(root)], capture_output=True, text=True)
    if r.returncode != 0:
        if "No space left" in r.stderr:
            raise DiskFull(f"disk full while writing {root}/etc/ld.so.cache")
        raise ImageError(f"ldconfig -r {root} failed (it needs root to chroot): {r.stderr.strip().splitlines()[-1:]}")
