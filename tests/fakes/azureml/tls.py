"""A throw-away certificate authority and server certificate, so the fake can speak TLS.

azure-core refuses to send a bearer token over plain http, so the fake must be an https server
that the SDK trusts through REQUESTS_CA_BUNDLE / SSL_CERT_FILE.
"""
from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Besides the loopback names, the certificate covers the hosts the fake serves as HTTPS_PROXY: the blob
# hosts the SDK builds from the datastore's account name, and the host of the MLTable JSON schema the
# SDK downloads before registering an mltable asset.
PROXIED_HOSTS = ["*.blob.core.windows.net", "azuremlschemasprod.azureedge.net"]
DNS_NAMES = ["localhost", *PROXIED_HOSTS]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: str) -> tuple[str, str, str]:
    """Write ca.pem, server.pem and server-key.pem into `directory`; return their paths.

    A CA plus a leaf rather than one self-signed certificate: the trusted file is then a proper CA,
    which strict X.509 verification (the default from Python 3.13) insists on.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("imgcls fake Azure CA"))
        .issuer_name(_name("imgcls fake Azure CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in DNS_NAMES] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file = os.path.join(directory, "ca.pem")
    cert_file = os.path.join(directory, "server.pem")
    key_file = os.path.join(directory, "server-key.pem")
    with open(ca_file, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return ca_file, cert_file, key_file
