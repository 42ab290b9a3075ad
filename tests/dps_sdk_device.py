"""The official Azure IoT Python SDK provisioning a device through the local DPS, as IoT
Central's X.509 guide does, then (when assigned) sending telemetry to the assigned hub.
Driven by tests/suite/dps_sdk.rs.

argv: registration_id id_scope cert_file key_file trust_pem_file [model_id]
Prints one JSON line: {"step":"registered",...} or {"step":"error","error":...}, then
{"step":"sent"} after the telemetry.
"""
import json
import sys
import threading

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509


_say_lock = threading.Lock()


def say(**kv):
    # One write per line under a lock: the SDK calls back on its own threads, and print()
    # writes the text and the newline separately, so two steps could interleave on one line.
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


def main():
    registration_id, id_scope, cert, key, trust = sys.argv[1:6]
    model_id = sys.argv[6] if len(sys.argv) > 6 else "dtmi:com:example:Thermostat;1"
    x509 = X509(cert_file=cert, key_file=key)
    server_cert = open(trust).read()
    prov = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=id_scope,
        x509=x509,
        server_verification_cert=server_cert,
    )
    prov.provisioning_payload = {"modelId": model_id}
    try:
        result = prov.register()
    except Exception as e:  # the SDK's ServiceError / CredentialError: what a reader sees
        say(step="error", error=f"{type(e).__name__}: {e}", cause=str(e.__cause__))
        return 0
    st = result.registration_state
    say(step="registered", status=result.status, assigned_hub=st.assigned_hub,
        device_id=st.device_id, substatus=st.sub_status, payload=st.response_payload
        if hasattr(st, "response_payload") else None)
    if result.status != "assigned":
        return 0
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=x509,
        hostname=st.assigned_hub,
        device_id=st.device_id,
        server_verification_cert=server_cert,
        connection_retry=False,
    )
    client.connect()
    m = Message(json.dumps({"deviceId": st.device_id, "messageId": 0, "temperature": 27,
                            "humidity": 71}))
    m.content_type = "application/json"
    m.content_encoding = "utf-8"
    m.custom_properties["temperatureAlert"] = "false"
    client.send_message(m)
    client.shutdown()
    say(step="sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
