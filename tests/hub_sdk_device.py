"""A device on the official Azure IoT Python SDK, driven by tests/hub_sdk.rs.

argv: device_id cert_file key_file trust_pem_file [websockets]
(with "websockets": MQTT over WebSockets on 443, tests/suite/transport_sdk.rs)
Prints one JSON line per step; the Rust side sends the C2D message and invokes the
method after "ready", and this script exits 0 once both arrived.
"""
import json
import sys
import threading

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse, X509


_say_lock = threading.Lock()


def say(**kv):
    # One write per line under a lock: the SDK calls back on its own threads, and print()
    # writes the text and the newline separately, so two steps could interleave on one line.
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


def main():
    device_id, cert, key, trust = sys.argv[1:5]
    websockets = sys.argv[5:6] == ["websockets"]
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=cert, key_file=key),
        hostname="localhost",
        device_id=device_id,
        server_verification_cert=open(trust).read(),
        connection_retry=False,
        websockets=websockets,
    )
    got_c2d = threading.Event()
    got_method = threading.Event()

    def on_message(msg):
        say(step="c2d", data=msg.data.decode(), props=msg.custom_properties,
            message_id=msg.message_id)
        got_c2d.set()

    def on_method(req):
        say(step="method", name=req.name, payload=req.payload)
        client.send_method_response(
            MethodResponse.create_from_method_request(req, 200, {"rebooted": True, "echo": req.payload}))
        got_method.set()

    client.on_message_received = on_message
    client.on_method_request_received = on_method
    client.connect()
    say(step="connected")
    for i in range(3):
        m = Message(json.dumps({"deviceId": device_id, "messageId": i, "temperature": 27 + i * 3}))
        m.message_id = f"msg-{i}"
        m.correlation_id = f"corr-{i}"
        m.content_type = "application/json"
        m.content_encoding = "utf-8"
        m.custom_properties["temperatureAlert"] = "true" if 27 + i * 3 > 30 else "false"
        m.custom_properties["slash/and space"] = "a&b=c"
        client.send_message(m)
    say(step="sent", count=3)
    twin = client.get_twin()
    say(step="twin", twin=twin)
    client.patch_twin_reported_properties({"firmware": "1.2.3", "nested": {"x": 1}})
    say(step="patched")
    twin = client.get_twin()
    say(step="twin2", twin=twin)
    say(step="ready")
    ok = got_c2d.wait(30) and got_method.wait(30)
    client.shutdown()
    say(step="done", ok=bool(ok))
    sys.exit(0 if ok else 3)


if __name__ == "__main__":
    main()
