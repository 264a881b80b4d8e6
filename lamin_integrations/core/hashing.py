"""Content hashes.

`hash_string` matches lamindb's source-code hash (md5, base64url, 22 characters), so a
transform's hash can be compared with one recorded by lamindb.
"""

from __future__ import annotations

import base64
import hashlib

HASH_LENGTH = 22


def b64_digest(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:HASH_LENGTH]


def hash_string(text: str) -> str:
    return b64_digest(hashlib.md5(text.encode()).digest())
