"""Playback tokens: signed, expiring and bound to one tenant's job, carried in the URL path.

`<payload>.<signature>`, both base64url without padding: the payload is the canonical JSON
of {"v": 1, "t": tenant id, "k": job key, "e": expiry (unix seconds)}, the signature its
HMAC-SHA256 under the server's playback secret. A token names exactly one job of one tenant,
so it can never reach another job's or another tenant's files; a changed byte, another
secret or a passed expiry is refused (403) before any lookup.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import VidjobsError
from jobs.keys import canonical_json, is_job_key
from jobs.settings import Settings

_CONTEXT = b"vidjobs-playback-v1\x00"
MAX_TOKEN = 400


class PlaybackTokenInvalid(VidjobsError):
    """A playback URL whose token is malformed, tampered with, or signed by another key."""

    code = "playback_token_invalid"
    http_status = 403


class PlaybackTokenExpired(PlaybackTokenInvalid):
    code = "playback_token_expired"


@dataclass(frozen=True)
class Grant:
    tenant_id: str
    key: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def sign(secret: bytes, tenant_id: str, key: str, expires: int) -> str:
    payload = _b64(canonical_json({"v": 1, "t": tenant_id, "k": key, "e": expires}))
    return f"{payload}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str, now: float | None = None) -> Grant:
    """The grant a token carries, or PlaybackTokenInvalid / PlaybackTokenExpired."""
    bad = PlaybackTokenInvalid("this playback URL is not valid; ask for a new one")
    if len(token) > MAX_TOKEN or not token.isascii() or token.count(".") != 1:
        raise bad
    payload, _, signature = token.partition(".")
    try:
        given = _unb64(signature)
        data = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise bad from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise bad
    if not isinstance(data, dict) or data.get("v") != 1:
        raise bad
    tenant, key, expires = data.get("t"), data.get("k"), data.get("e")
    if not isinstance(tenant, str) or not isinstance(key, str) or not is_job_key(key):
        raise bad
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise bad
    if expires <= (time.time() if now is None else now):
        raise PlaybackTokenExpired("this playback URL has expired; ask for a new one")
    return Grant(tenant, key, expires)


_SECRETS: dict[Path, bytes] = {}


def playback_secret(settings: Settings) -> bytes:
    """VIDJOBS_PLAYBACK_SECRET, or (embedded mode) a random key kept in the data dir, made
    once with mode 0600. Every API process of a fleet must be given the same secret."""
    if settings.playback_secret is not None:
        return settings.playback_secret.encode("utf-8")
    path = (settings.data_dir / "playback.key").resolve()
    if path in _SECRETS:
        return _SECRETS[path]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # written whole, then linked into place: first writer wins
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".playback-")
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        os.unlink(tmp)
    value = path.read_bytes()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no playback key; delete it to make a new one")
    _SECRETS[path] = value
    return value
