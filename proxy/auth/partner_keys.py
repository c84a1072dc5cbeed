"""Key pairs for partners and tests: ``fhirplug keys generate`` writes a private JWK and the
public JWK set to register with ``fhirplug clients add --jwks``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from joserfc.jwk import ECKey, RSAKey

from proxy.auth.client_assertion import ALGORITHMS

if TYPE_CHECKING:  # joserfc's typed dict of key parameters: only the type checker needs it
    from joserfc.jwk import KeyParameters


def generate(kid: str, out_dir: str | Path, alg: str = "RS512", rsa_bits: int = 4096) -> tuple[Path, Path]:
    """Returns (private key file, public JWK set file). Refuses to overwrite a key."""
    if alg not in ALGORITHMS:
        raise ValueError(f"alg must be one of {', '.join(ALGORITHMS)}")
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    key: RSAKey | ECKey
    if alg.startswith("RS"):
        key = RSAKey.generate_key(rsa_bits, parameters=params)  # the NHS asks for 4096-bit RSA
    else:
        key = ECKey.generate_key("P-384", parameters=params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / f"{kid}.private.jwk.json", out / f"{kid}.jwks.json"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key.as_dict(private=True), f)
    public.write_text(json.dumps({"keys": [key.as_dict(private=False)]}, indent=2) + "\n")
    return private, public
