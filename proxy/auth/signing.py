"""The server's own signing keys: ES256 keys as JWK files in FHIRPLUG_KEYS_DIR.

The newest key signs; every key in the folder verifies and is published at
/.well-known/jwks.json. Rotation adds a key (``fhirplug keys rotate``); the old one keeps
verifying the tokens it signed until it is pruned, which must wait at least a token lifetime.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from pathlib import Path

from joserfc.jwk import ECKey, KeySet

ALG = "ES256"  # small tokens; signing is ~20x cheaper than RSA, which the token endpoint feels


class ServerKeys:
    RELOAD_EVERY = 1.0  # seconds between looks at the folder for rotated keys

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple = ()
        self._keys: list[ECKey] = []

    def ensure(self) -> None:
        """Create the first key if there is none; safe when several processes start at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not list(self.folder.glob("*.jwk.json")):
                self._write_new()

    def rotate(self) -> str:
        self.ensure()
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._write_new()

    def prune(self, older_than_s: float) -> list[str]:
        """Remove keys older than ``older_than_s`` except the newest (the one that signs)."""
        files = self._files()
        now = time.time()
        removed = []
        for f in files[:-1]:
            if now - f.stat().st_mtime > older_than_s:
                f.unlink()
                removed.append(f.name.removesuffix(".jwk.json"))
        return removed

    def _write_new(self) -> str:
        kid = f"fp-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"})
        path = self.folder / f"{kid}.jwk.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(key.as_dict(private=True), f)
        return kid

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("*.jwk.json"), key=lambda p: (p.stat().st_mtime, p.name))

    def _reload(self) -> list[ECKey]:
        now = time.monotonic()
        if now - self._checked < self.RELOAD_EVERY and self._keys:
            return self._keys
        with self._lock:
            files = self._files()
            stamp = tuple((f.name, f.stat().st_mtime) for f in files)
            if stamp != self._stamp:
                self._keys = [ECKey.import_key(json.loads(f.read_text())) for f in files]
                self._stamp = stamp
            self._checked = now
        if not self._keys:
            raise RuntimeError(f"no signing key in {self.folder}; run `fhirplug keys rotate`")
        return self._keys

    @property
    def signing_key(self) -> ECKey:
        return self._reload()[-1]

    def verification_keys(self) -> KeySet:
        return KeySet(list(self._reload()))

    def public_jwks(self) -> dict:
        return {"keys": [k.as_dict(private=False) for k in self._reload()]}
