#!/usr/bin/env python3
"""TLS helpers for mcptape's tests of https:// and wss:// upstreams (runs in .venv: `cryptography`, `uvicorn` and
`mcp-server-time` are there).

Usage:
    python tls.py certs DIR
        writes DIR/ca.pem (a throwaway CA), DIR/server.pem and DIR/server-key.pem (a certificate it signed for
        localhost and 127.0.0.1), valid for a day. A client trusts the server by trusting ca.pem
        (e.g. SSL_CERT_FILE=DIR/ca.pem for mcptape).
    python tls.py time-server --port N --cert server.pem --key server-key.pem
        mcp-server-time over Streamable HTTP on https://localhost:N/mcp (both protocol eras, like the plain one in
        tests/peers/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from pathlib import Path


def certs(out: Path) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcptape test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "server.pem").write_bytes(leaf.public_bytes(pem))
    (out / "server-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return 0


def time_server(port: int, cert: str, key: str) -> int:
    import uvicorn
    from mcp_server_time.server import create_server

    app = create_server("UTC").streamable_http_app(host="localhost")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ssl_certfile=cert, ssl_keyfile=key, log_level="warning"
    )
    uvicorn.Server(config).run()
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("certs")
    c.add_argument("dir")
    t = sub.add_parser("time-server")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--cert", required=True)
    t.add_argument("--key", required=True)
    a = p.parse_args()
    if a.cmd == "certs":
        return certs(Path(a.dir))
    return time_server(a.port, a.cert, a.key)


if __name__ == "__main__":
    sys.exit(main())
