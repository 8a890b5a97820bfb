"""Entry points for `linuxabi policy ...` and `linuxabi audit ...`.

Each takes the arguments after its command words and returns the exit status:
0 success, 1 the file has problems, 2 a usage mistake (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(message)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str],
         body: Callable[[argparse.Namespace], int]) -> int:
    try:
        return body(parser.parse_args(list(argv)))
    except _Usage as e:
        sys.stderr.write(f"linuxabi: {e}\n")
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:  # `... | head`
        try:
            sys.stdout.close()
        except OSError:
            pass
        return 0


def _readable(path: str) -> None:
    if not os.path.exists(path):
        raise _Usage(f"{path}: no such file")
    if os.path.isdir(path):
        raise _Usage(f"{path}: is a directory")
    if not os.access(path, os.R_OK):
        raise _Usage(f"{path}: permission denied")


def policy_check_main(argv: Sequence[str]) -> int:
    """`linuxabi policy check FILE...`"""
    from .policy import check_policy, load_policy

    p = _Parser(prog="linuxabi policy check", description="Check sandbox policy files.")
    p.add_argument("files", nargs="+", metavar="FILE")

    def body(args: argparse.Namespace) -> int:
        status = 0
        for f in args.files:
            _readable(f)
        for f in args.files:
            errors = check_policy(f)
            for e in errors:
                print(f"{f}:{e.line}: {e.message}")
            if errors:
                status = 1
            else:
                n = load_policy(f).rule_count
                print(f"{f}: ok: {n} rules" if len(args.files) > 1 else f"ok: {n} rules")
        return status

    return _run(p, argv, body)


def audit_main(argv: Sequence[str]) -> int:
    """`linuxabi audit verify LOG` and `linuxabi audit show LOG [--denied]`"""
    from .audit import AuditError, format_record, show, verify

    p = _Parser(prog="linuxabi audit", description="Check or read an audit log.")
    sub = p.add_subparsers(dest="cmd", metavar="{verify,show}", parser_class=_Parser)
    sub.required = True
    v = sub.add_parser("verify", help="check the hash chain of every record")
    v.add_argument("log", metavar="LOG")
    s = sub.add_parser("show", help="print the records, one per line")
    s.add_argument("log", metavar="LOG")
    s.add_argument("--denied", action="store_true", help="only denials")

    def body(args: argparse.Namespace) -> int:
        _readable(args.log)
        if args.cmd == "verify":
            r = verify(args.log)
            if r.ok:
                print(f"ok: {r.records} records")
                return 0
            print(f"{args.log}: record {r.first_bad_record}: {r.reason}")
            return 1
        try:
            for rec in show(args.log, denied_only=args.denied):
                print(format_record(rec))
        except AuditError as e:
            print(f"{args.log}: {e}")
            return 1
        return 0

    return _run(p, argv, body)
