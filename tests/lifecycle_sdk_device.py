"""A device on the official Azure IoT Python SDK, driven by tests/suite/lifecycle_hub.rs.

argv: device_id cert_file key_file trust_pem_file mode
mode "once": connect, send one telemetry message, disconnect.
mode "hold": connect, send one message, then stay connected until standard input closes.
Prints one JSON line per step: {"step": "connected"|"sent"|"error", ...}; exits 0 when it
connected, 1 when it could not.
"""
import json
import sys
import threading

from azure.iot.device import IoTHubDeviceClient, Message, X509


_say_lock = threading.Lock()


def say(**kv):
    # One write per line under a lock: the SDK calls back on its own threads, and print()
    # writes the text and the newline separately, so two steps could interleave on one line.
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


def main():
    device_id, cert, key, trust, mode = sys.argv[1:6]
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=cert, key_file=key),
        hostname="localhost",
        device_id=device_id,
        server_verification_cert=open(trust).read(),
        connection_retry=False,
    )
    try:
        client.connect()
    except Exception as e:  # the SDK raises its own types; the test only needs the fact
        say(step="error", error=f"{type(e).__name__}: {e}")
        return 1
    say(step="connected")
    client.send_message(Message(json.dumps({"deviceId": device_id, "messageId": 0, "temperature": 27})))
    say(step="sent")
    if mode == "hold":
        sys.stdin.read()
    try:
        client.shutdown()
    except Exception:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
