"""Tokens and keys for pg_ws's token tests (test/e2e/test_auth.py).

Not a test itself (test/run_tests.sh runs test_*.py only).  It mints
compact JWS tokens the way an application or an attacker would, with no
JWT library: HS256 with hmac/hashlib, RS256 and ES256 with Debian's
python3-cryptography (38), which also generates the keys.  It can also
mint what a server must refuse: alg "none", the HS/RS confusion, bad
base64url, broken JSON, a crit header, and tokens signed with keys the
server does not know.

Every token minted here is remembered in MINTED, so that a test can check
that none of them ever reached the server log.
"""

import base64
import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

MINTED = []


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


def part(obj):
    """A header or payload segment: JSON (compact) as base64url.  A str or
    bytes is taken as the raw JSON text, so that broken JSON can be sent."""
    if isinstance(obj, (str, bytes)):
        return b64url(obj)
    return b64url(json.dumps(obj, separators=(',', ':')))


def claims(ttl=300, **extra):
    """Claims that expire ttl seconds from now (negative: in the past)."""
    now = int(time.time())
    c = {'iat': now, 'exp': now + ttl}
    c.update(extra)
    return c


def _remember(token):
    MINTED.append(token)
    return token


# ---------------------------------------------------------------- signing

def hs256(payload, secret, header=None, alg='HS256', digest=hashlib.sha256):
    """HMAC-signed token; secret is str or bytes; header overrides merge."""
    h = {'alg': alg, 'typ': 'JWT'}
    h.update(header or {})
    if isinstance(secret, str):
        secret = secret.encode()
    signing_input = part(h) + '.' + part(payload)
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return _remember(signing_input + '.' + b64url(sig))


def rs256(payload, private_key, header=None):
    h = {'alg': 'RS256', 'typ': 'JWT'}
    h.update(header or {})
    signing_input = part(h) + '.' + part(payload)
    sig = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return _remember(signing_input + '.' + b64url(sig))


def es256(payload, private_key, header=None):
    """ES256 as JWS wants it: the signature is r||s, 32 bytes each."""
    h = {'alg': 'ES256', 'typ': 'JWT'}
    h.update(header or {})
    signing_input = part(h) + '.' + part(payload)
    der = private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    sig = r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
    return _remember(signing_input + '.' + b64url(sig))


def unsigned(payload, alg='none', signature=''):
    """alg "none" (or any alg) with the given signature segment."""
    return _remember(part({'alg': alg, 'typ': 'JWT'}) + '.' + part(payload) + '.' + signature)


def raw(header, payload, signature):
    """Any three segments, already encoded or not (see part())."""
    return _remember('%s.%s.%s' % (header, payload, signature))


# ------------------------------------------------------------------- keys

def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve=None):
    return ec.generate_private_key(curve or ec.SECP256R1())


def public_pem(private_key):
    """The public key as PEM (BEGIN PUBLIC KEY), bytes."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def decode_payload(token):
    return json.loads(b64url_decode(token.split('.')[1]))
