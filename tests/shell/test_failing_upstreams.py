"""Failing upstreams: refused, reset mid-body or mid-stream, silent, or with a bad certificate. The
client gets a 502/504 naming the cause or a cleanly cut stream; nothing hangs; every decision is
reported."""

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings


async def misbehaving_upstream(behaviour: str) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "silent":
            await asyncio.sleep(30)
        elif behaviour == "reset_mid_body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            await writer.drain()
            writer.transport.abort()
            return
        elif behaviour == "reset_mid_sse":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.transport.abort()
            return
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def cert_chain(directory: Path, kind: str) -> tuple[Path, Path, Path]:
    """(trusted CA, server cert, server key) where the server cert is expired / self-signed / for another name."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now + dt.timedelta(days=10))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    name = "other.test" if kind == "wrong_name" else "bad.test"
    issuer_name, signer = (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key) \
        if kind == "self_signed" else (ca_name, ca_key)
    before, after = (now - dt.timedelta(days=5), now - dt.timedelta(days=1)) if kind == "expired" \
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=5))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(before).not_valid_after(after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(signer, hashes.SHA256()))
    paths = directory / f"{kind}-ca.pem", directory / f"{kind}.pem", directory / f"{kind}.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def run_case(tmp_path: Path, behaviour: str) -> tuple[bytes, list]:
    loop = asyncio.get_running_loop()
    s = settings(tmp_path, '[permissions.t.network.domains]\n"*" = "allow"\n'
                           '[permissions.t.network.mitm.hooks.h]\nhost = "bad.test"\nmethods = ["GET"]\n'
                           'path_prefixes = ["/"]\naction = ["a"]\n[permissions.t.network.mitm.actions.a]\n'
                           'strip_request_headers = ["cookie"]\n')
    extra_ca: tuple[Path, ...] = ()
    if behaviour in ("expired", "self_signed", "wrong_name"):
        ca, cert, key = cert_chain(tmp_path, behaviour)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
        extra_ca = (ca,)
        scheme = "https"
    elif behaviour == "refused":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server, scheme = None, "http"
    else:
        server, scheme = await misbehaving_upstream(behaviour), "http"
    if server is not None:
        port = server.sockets[0].getsockname()[1]
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, upstream_cas=extra_ca, read_timeout=0.5,
                           connect_timeout=1.0, pins={("bad.test", port): ipaddress.ip_address("127.0.0.1")})
    app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
    reported: list = []
    app.sinks.append(lambda decision, context: reported.append((decision.reason.value, context.status)))
    await app.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
    if scheme == "https":
        writer.write(f"CONNECT bad.test:{port} HTTP/1.1\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        trust = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
        await writer.start_tls(trust, server_hostname="bad.test")
        writer.write(f"GET /x HTTP/1.1\r\nHost: bad.test:{port}\r\nConnection: close\r\n\r\n".encode())
    else:
        writer.write(f"GET http://bad.test:{port}/x HTTP/1.1\r\nHost: bad.test:{port}\r\nConnection: close\r\n\r\n"
                     .encode())
    start = loop.time()
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        answer = b"<reset>"
    assert loop.time() - start < 8   # nothing hangs
    writer.close()
    await app.stop(drain=1)
    if server is not None:
        server.close()
    return answer, reported


@pytest.mark.parametrize(("behaviour", "status", "cause"), [
    ("refused", b"502", b"cannot connect"),
    ("silent", b"504", b"did not answer in time"),
    ("expired", b"502", b"certificate has expired"),
    ("self_signed", b"502", b"failed verification"),
    ("wrong_name", b"502", b"failed verification"),
])
def test_failures_before_the_answer_name_their_cause(tmp_path, behaviour, status, cause):
    answer, reported = asyncio.run(run_case(tmp_path, behaviour))
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert cause in answer
    assert reported and reported[-1][1] == int(status)   # the decision was reported, with its status


@pytest.mark.parametrize("behaviour", ["reset_mid_body", "reset_mid_sse"])
def test_a_reset_mid_answer_cuts_the_client_cleanly(tmp_path, behaviour):
    answer, reported = asyncio.run(run_case(tmp_path, behaviour))
    assert answer == b"<reset>" or answer.startswith(b"HTTP/1.1 200")
    if behaviour == "reset_mid_body" and answer != b"<reset>":
        _, _, body = answer.partition(b"\r\n\r\n")
        assert len(body) < 1000   # truncated, never padded into a valid-looking body
    if behaviour == "reset_mid_sse" and answer != b"<reset>":
        assert b"data: first" in answer and not answer.endswith(b"0\r\n\r\n")   # no clean chunked end
    assert reported
