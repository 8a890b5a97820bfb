"""The policy file: parsing, the CSpace it builds, and check_policy's line numbers."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from caps.model import CapabilityDenied
from caps.policy import PolicyInvalid, check_policy, default_policy, load_policy, parse_policy
from caps.rights import Rights

R, W, X, C, D = Rights.READ, Rights.WRITE, Rights.EXEC, Rights.CREATE, Rights.DELETE

EXAMPLE = """\
[filesystem]
"/" = "rx"            # the image: read+exec
"/tmp" = "rwxcd"      # r w x create delete
"/data" = "r"
"/data/out" = "rwc"
"/secret" = ""
[network]
bind = ["tcp:0.0.0.0:8080"]
connect = ["tcp:10.0.2.0/24:*"]
[devices]
allow = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
"/dev/nvidia*" = "rwi"
[limits]
processes = 256
open_files = 1024
"""


def test_example_parses() -> None:
    p = parse_policy(EXAMPLE)
    assert p.filesystem[b"/"] == R | X and p.filesystem[b"/secret"] == Rights(0)
    assert p.rule_count == 5 + 2 + 7
    assert p.limits.processes == 256 and p.limits.open_files == 1024
    assert p.spawn and p.tty


def test_most_specific_rule_wins() -> None:
    cs = parse_policy(EXAMPLE).build_cspace()
    cs.authorize_path(b"/usr/bin/ls", R | X)
    cs.authorize_path(b"/tmp/a/b", W | C | D)
    cs.authorize_path(b"/data/in", R)
    cs.authorize_path(b"/data/out/f", W | C)
    cs.authorize_path(b"/database", R)  # "/" rule: component boundaries
    denials = [(b"/usr/bin/ls", W), (b"/data/in", W), (b"/data/in", X), (b"/data/out/f", D),
               (b"/secret", R), (b"/secret/key", R), (b"/database", W)]
    for path, rights in denials:
        with pytest.raises(CapabilityDenied) as e:
            cs.authorize_path(path, rights)
        assert e.value.errno == errno.EACCES
    cs.authorize_bind("tcp", "0.0.0.0", 8080)
    cs.authorize_connect("tcp", "10.0.2.15", 22)
    cs.authorize_device(b"/dev/nvidia-uvm", Rights.IOCTL)
    with pytest.raises(CapabilityDenied):
        cs.authorize_device(b"/dev/sda", R)
    assert cs.limits.processes == 256


def test_default_policy() -> None:
    p = default_policy()
    cs = p.build_cspace()
    cs.authorize_path(b"/bin/sh", R | X)
    cs.authorize_path(b"/etc/hosts", W | C | D)  # the overlay takes writes
    cs.authorize_path(b"/tmp/x", R | W | C | D)
    for dev in (b"/dev/null", b"/dev/zero", b"/dev/full", b"/dev/random", b"/dev/urandom", b"/dev/tty"):
        cs.authorize_device(dev, R | W)
    with pytest.raises(CapabilityDenied):
        cs.authorize_device(b"/dev/mem", R)
    with pytest.raises(CapabilityDenied) as e:
        cs.authorize_connect("tcp", "1.1.1.1", 443)
    assert e.value.errno == errno.EPERM
    # The sandbox's own loopback is open: binding anywhere (only loopback and -p reach it
    # without --net) and connecting within 127.0.0.0/8; nothing beyond.
    cs.authorize_bind("tcp", "0.0.0.0", 8080)
    cs.authorize_connect("tcp", "127.0.0.1", 8080)
    with pytest.raises(CapabilityDenied):
        cs.authorize_connect("udp", "10.0.2.2", 53)
    cs.authorize_spawn()
    cs.authorize_tty(R | W)


def test_policy_caps_have_no_grant_unless_asked() -> None:
    cs = parse_policy('[filesystem]\n"/" = "rx"\n"/share" = "rg"\n').build_cspace()
    assert [bool(c.rights & Rights.GRANT) for _, c in cs if hasattr(c.obj, "path")] == [False, True]


def test_process_section() -> None:
    cs = parse_policy("[process]\nspawn = false\ntty = false\n").build_cspace()
    with pytest.raises(CapabilityDenied):
        cs.authorize_spawn()
    with pytest.raises(CapabilityDenied):
        cs.authorize_tty(R)


def test_parse_policy_raises_with_all_errors() -> None:
    with pytest.raises(PolicyInvalid) as e:
        parse_policy('[filesystem]\n"/a" = "rq"\n"/b" = "zz"\n', "p.toml")
    assert [x.line for x in e.value.errors] == [2, 3]
    assert str(e.value).startswith("p.toml:2: ")


@pytest.mark.parametrize("text,line,fragment", [
    ('[filesystem]\n"/" = "rx"\n"/tmp" = "rwq"\n', 3, "unknown right 'q'"),
    ('[filesystem]\n"/" = "rx"\n\n"/data/../etc" = "r"\n', 4, "normalised"),
    ('[filesystem]\n"/" = "rb"\n', 2, "do not apply to files"),
    ('[filesystem]\n"/" = 7\n', 2, "must be a string"),
    ('[filesystem]\n"/" = "rx"\n[network]\nbind = ["tcp:0.0.0.0:8080"]\nconnect = [\n  "tcp:10.0.2.0/24:*",\n'
     '  "tcp:10.0.2.1/24:*",\n]\n', 7, "host bits"),
    ('[network]\nconnect = ["tcp:1.2.3.4"]\n', 2, "PROTO:ADDRESS:PORTS"),
    ('[network]\nlisten = ["tcp:1.2.3.4:80"]\n', 2, "unknown key 'listen'"),
    ('[filesystem]\n"/" = "rx"\n\n[netwrok]\nbind = []\n', 4, "unknown section [netwrok]"),
    ('title = "x"\n[filesystem]\n', 1, "unknown key 'title'"),
    ('[devices]\nallow = ["/dev/null", "/etc/passwd"]\n', 2, "under /dev/"),
    ('[devices]\nallow = ["/dev/null"]\n"/dev/sd*" = "rx"\n', 3, "do not apply to devices"),
    ('[devices]\nnvidia = "rw"\n', 2, "unknown key 'nvidia'"),
    ('[limits]\nprocesses = 256\nopen_files = -1\n', 3, "positive integer"),
    ('[limits]\nthreads = 5\n', 2, "unknown key 'threads'"),
    ('[process]\nspawn = "yes"\n', 2, "true or false"),
    ('[filesystem]\n"/" = "rx"\n"/tmp" = \n', 3, "TOML syntax: Invalid value"),
    ('[filesystem]\n"/" = "rx"\n"/" = "r"\n', 3, "TOML syntax"),
    ('[filesystem]\n"/" = "rx\n', 2, "TOML syntax"),
    ('[network]\nbind = ["tcp:0.0.0.0:80",\n', 2, "TOML syntax"),
])
def test_check_policy_errors_and_lines(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    f = tmp_path / "policy.toml"
    f.write_text(text)
    errors = check_policy(f)
    assert len(errors) == 1, errors
    assert errors[0].line == line, errors
    assert fragment in errors[0].message
    assert "\n" not in errors[0].message


def test_check_policy_valid(tmp_path: Path) -> None:
    f = tmp_path / "policy.toml"
    f.write_text(EXAMPLE)
    assert check_policy(f) == []
    assert load_policy(f).rule_count == 14


def test_check_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_policy(tmp_path / "nope.toml")
