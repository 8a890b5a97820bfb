"""SHA-256 as hex, from CPython's own implementation where it has one: hashlib loads OpenSSL on
import (~4 ms of every `linuxabi run`, which hashes its audit records and its filter's cache key)."""
from __future__ import annotations

try:
    from _sha256 import sha256 as _sha256
except ImportError:  # another interpreter, or a later CPython (its module is named _sha2)
    from hashlib import sha256 as _sha256


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()
