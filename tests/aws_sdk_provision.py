"""Fleet provisioning by claim with the official AWS IoT Device SDK v2 for Python (awsiotsdk's
`iotidentity.IotIdentityClientV2`), driven by tests/suite/aws_provision.rs against the local
AWS IoT Core.

argv: mode endpoint port claim_cert claim_key trust_pem template serial out_dir
modes:
  csr     CreateCertificateFromCsr (a P-256 key made here, CN = serial) + RegisterThing, then
          reconnect with the new certificate as the thing and publish at QoS 1
  keys    CreateKeysAndCertificate + RegisterThing, reconnect and publish; then the spent
          token again, and a template that does not exist
  expire  CreateKeysAndCertificate, say "created", wait for a line on stdin (the test moves
          the service's clock), then RegisterThing
Prints one JSON line per step; exits 0 when the mode's steps all happened.
"""
import json
import os
import sys
import threading

from awscrt import mqtt, mqtt_request_response
from awsiot import V2ServiceException, iotidentity, mqtt_connection_builder

_say_lock = threading.Lock()


def say(**kv):
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


def connect(endpoint, port, cert, key, trust, client_id):
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=endpoint, port=int(port), cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=trust, client_id=client_id, clean_session=True, keep_alive_secs=30)
    conn.connect().result(timeout=10)
    return conn


def identity(conn):
    options = mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=2, max_streaming_subscriptions=2,
        operation_timeout_in_seconds=10)
    return iotidentity.IotIdentityClientV2(conn, options)


def rejected(e):
    """The /rejected reply's fields, or what else went wrong."""
    m = getattr(e, "modeled_error", None)
    if m is not None:
        return {"status": m.status_code, "code": m.error_code, "message": m.error_message}
    return {"other": f"{type(e).__name__}: {e}"}


def register(client, template, token, serial):
    return client.register_thing(iotidentity.RegisterThingRequest(
        template_name=template, certificate_ownership_token=token,
        parameters={"SerialNumber": serial})).result(timeout=15)


def reconnect_and_publish(endpoint, port, trust, out_dir, thing, cert_pem, key_pem):
    cert = os.path.join(out_dir, "certificate.pem.crt")
    key = os.path.join(out_dir, "private.pem.key")
    with open(cert, "w") as f:
        f.write(cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key_pem)
    conn = connect(endpoint, port, cert, key, trust, thing)
    say(step="reconnected", client_id=thing)
    pub, _ = conn.publish(topic=f"dev/{thing}/hello", payload=b"provisioned",
                          qos=mqtt.QoS.AT_LEAST_ONCE)
    pub.result(timeout=10)
    say(step="published")
    conn.disconnect().result(timeout=10)


def main():
    mode, endpoint, port, claim_cert, claim_key, trust, template, serial, out_dir = sys.argv[1:10]
    try:
        conn = connect(endpoint, port, claim_cert, claim_key, trust, f"claim-{serial}")
    except Exception as e:
        say(step="connect_failed", error=f"{type(e).__name__}: {e}")
        sys.exit(3)
    say(step="connected")
    client = identity(conn)
    key_pem = None
    try:
        if mode == "csr":
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
            key = ec.generate_private_key(ec.SECP256R1())
            csr = x509.CertificateSigningRequestBuilder().subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)])).sign(key, hashes.SHA256())
            key_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
            created = client.create_certificate_from_csr(iotidentity.CreateCertificateFromCsrRequest(
                certificate_signing_request=csr.public_bytes(serialization.Encoding.PEM).decode(),
            )).result(timeout=15)
        else:
            created = client.create_keys_and_certificate(
                iotidentity.CreateKeysAndCertificateRequest()).result(timeout=15)
            key_pem = created.private_key
    except V2ServiceException as e:
        say(step="create_rejected", **rejected(e))
        sys.exit(4)
    say(step="created", certificate_id=created.certificate_id,
        has_key=bool(getattr(created, "private_key", None)))
    if mode == "expire":
        sys.stdin.readline()
    try:
        reg = register(client, template, created.certificate_ownership_token, serial)
    except V2ServiceException as e:
        say(step="register_rejected", **rejected(e))
        conn.disconnect().result(timeout=10)
        sys.exit(0 if mode == "expire" else 5)
    say(step="registered", thing=reg.thing_name, configuration=reg.device_configuration)
    if mode == "keys":
        for name, tmpl in (("reused_token", template), ("no_template", "no-such-template")):
            try:
                register(client, tmpl, created.certificate_ownership_token, serial)
                say(step=name + "_accepted")
            except V2ServiceException as e:
                say(step=name, **rejected(e))
    conn.disconnect().result(timeout=10)
    reconnect_and_publish(endpoint, port, trust, out_dir, reg.thing_name,
                          created.certificate_pem, key_pem)
    say(step="done")


if __name__ == "__main__":
    main()
