"""``linuxabi image ...`` through its parser (as the top-level CLI adds it) and handler."""
from __future__ import annotations

import io
import json

import pytest

from linuxabi.cli import _Parser
from linuxabi.images import BuildResult, ImageNotFound, Store
from linuxabi.images.cli import add_image_parser, cmd_image


def run(store: Store, *argv: str) -> tuple[int, str, str]:
    parser = _Parser(prog="linuxabi")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    add_image_parser(sub)
    args = parser.parse_args(["image", *argv])
    out, err = io.StringIO(), io.StringIO()
    rc = cmd_image(args, store=store, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_build_list_show_path_rm(store: Store, small: BuildResult) -> None:
    rc, _, err = run(store, "build", "cli", "--packages", "sed", "-p", "grep")
    assert rc == 0
    lines = err.splitlines()
    # Not a terminal: plain lines, one per step, no carriage returns or escapes.
    assert "\r" not in err and "\033" not in err
    assert lines[0].startswith("resolving sed, grep") and lines[-1].startswith("image cli: ")
    assert any(ln.startswith("unpack: ") for ln in lines)
    rc, _, err = run(store, "build", "cli", "--packages", "grep,sed")
    assert rc == 0 and "up to date" in err and len(err.splitlines()) == 1

    rc, out, _ = run(store, "list")
    table = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert out.startswith("NAME") and {"cli", "small"} <= set(table) and "sed,grep" in table["cli"]

    rc, out, _ = run(store, "show", "small")
    assert "coreutils" in out and "libc6" in out
    version = next(p.version for p in small.manifest.packages if p.name == "coreutils")
    assert any(ln.split()[:2] == ["coreutils", version] for ln in out.splitlines())
    rc, out, _ = run(store, "show", "small", "--json")
    assert {p["name"] for p in json.loads(out)["packages"]} >= {"coreutils", "libc6"}

    rc, out, _ = run(store, "path", "cli")
    assert out.strip() == str(store.root("cli"))

    rc, out, _ = run(store, "rm", "cli")
    assert rc == 0 and out.strip() == "removed cli"
    assert not store.root("cli").exists() and not store.marker("cli").exists()
    assert not store.manifest_path("cli").exists()
    with pytest.raises(ImageNotFound, match="no image named cli"):
        run(store, "show", "cli")
    with pytest.raises(ImageNotFound):
        run(store, "rm", "cli")


def test_usage_mistakes_are_one_line(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["build", "x"], [], ["frobnicate"]):
        with pytest.raises(SystemExit) as e:
            run(store, *argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("linuxabi: ") and len(err.splitlines()) == 1
