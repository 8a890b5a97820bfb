"""Dependency choice on a known graph (alternatives, virtual packages, Recommends), then against
the host's apt lists."""
from __future__ import annotations

import re

import pytest

from linuxabi.images import UnknownPackage
from linuxabi.images.extract import parse_alternatives
from linuxabi.images.resolver import Package, _choose, parse_depends, resolve

DEPENDS = """\
app
  PreDepends: libc6
 |Depends: mime-support
  Depends: media-types
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Depends: <awk>
    gawk
    mawk
  Depends: python3:any
  Recommends: extra
libc6
  Depends: libgcc-s1
libgcc-s1
  Depends: libc6
mime-support
  Depends: mailcap
media-types
debconf
cdebconf
  Depends: debconf
gawk
mawk
python3
extra
mailcap
<debconf-2.0>
<awk>
"""


def pkg(name: str, priority: str = "optional", provides: tuple[str, ...] = ()) -> Package:
    return Package(name, "1.0", "amd64", f"pool/{name}.deb", 1, "0" * 64, priority, provides)


def records() -> dict[str, Package]:
    names = ["app", "libc6", "libgcc-s1", "media-types", "debconf", "cdebconf", "gawk", "python3", "extra"]
    out = {n: pkg(n) for n in names}
    out["mawk"] = pkg("mawk", "required", ("awk",))
    out["debconf"] = pkg("debconf", "important", ("debconf-2.0",))
    return out  # mime-support and mailcap: not available


def test_parse_depends() -> None:
    g = parse_depends(DEPENDS)
    assert g.clauses["app"][:2] == [("PreDepends", ["libc6"]), ("Depends", ["mime-support", "media-types"])]
    assert ("Depends", ["python3"]) in g.clauses["app"]  # the :any qualifier is dropped
    assert g.providers["debconf-2.0"] == ["cdebconf", "debconf"]
    assert g.virtual == {"debconf-2.0", "awk"}


def test_choice() -> None:
    g = parse_depends(DEPENDS)
    chosen = [p.name for p in _choose(["libc6", "app"], g, records(), set(), False)]
    assert chosen[:2] == ["libc6", "app"]
    assert "media-types" in chosen and "mime-support" not in chosen  # first *available* alternative
    assert "debconf" in chosen and "cdebconf" not in chosen  # the provider of highest priority
    assert "mawk" in chosen and "gawk" not in chosen
    assert "extra" not in chosen  # Recommends only on request
    with_rec = [p.name for p in _choose(["app"], g, records(), set(), True)]
    assert "extra" in with_rec


def test_already_chosen_alternative_wins() -> None:
    g = parse_depends(DEPENDS)
    chosen = [p.name for p in _choose(["gawk", "app"], g, records(), set(), False)]
    assert "gawk" in chosen and "mawk" not in chosen


def test_exclude_and_unsatisfiable() -> None:
    g = parse_depends(DEPENDS)
    chosen = [p.name for p in _choose(["app"], g, records(), {"python3"}, False)]
    assert "python3" not in chosen
    recs = records()
    del recs["media-types"]
    with pytest.raises(UnknownPackage, match=re.escape("app depends on mime-support | media-types")):
        _choose(["app"], g, recs, set(), False)


def test_against_apt_lists() -> None:
    names = [p.name for p in resolve(["awk"])]
    assert names[0] == "libc6" and "mawk" in names  # a virtual package asked for by name
    with pytest.raises(UnknownPackage, match="unknown package: no-such-package-xyzzy"):
        resolve(["no-such-package-xyzzy"])


def test_parse_alternatives() -> None:
    script = """#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\
            --slave /usr/bin/nawk nawk /usr/bin/mawk
        update-alternatives --install /usr/bin/x x "$target" 10
fi
"""
    (alt,) = parse_alternatives(script)
    assert (alt.name, alt.link, alt.path, alt.priority) == ("awk", "/usr/bin/awk", "/usr/bin/mawk", 5)
    assert alt.slaves == (("/usr/bin/nawk", "nawk", "/usr/bin/mawk"),)
