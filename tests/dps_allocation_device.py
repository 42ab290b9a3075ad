"""The official Azure IoT Python SDK registering through the local DPS, reporting what it
parsed and the registration state's JSON as DPS sent it. Driven by
tests/suite/dps_allocation.rs.

argv: registration_id id_scope cert_file key_file trust_pem_file payload_json
Prints one JSON line: {"step":"registered","status":…,"response_payload":…,"raw":{…}} or
{"step":"error","error":…,"cause":…}.
"""
import json
import sys

from azure.iot.device import ProvisioningDeviceClient, X509
from azure.iot.device.provisioning.pipeline import pipeline_stages_provisioning as stages

# The SDK decodes each DPS answer with its module's json.loads; the last one decoded is the
# answer it built its RegistrationResult from, so the test checks the very JSON it parsed.
_seen = []


class _Json:
    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text, *args, **kwargs):
        value = json.loads(text, *args, **kwargs)
        _seen.append(value)
        return value


stages.json = _Json


def say(**kv):
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


def main():
    registration_id, id_scope, cert, key, trust, payload = sys.argv[1:7]
    prov = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host="localhost",
        registration_id=registration_id,
        id_scope=id_scope,
        x509=X509(cert_file=cert, key_file=key),
        server_verification_cert=open(trust).read(),
    )
    prov.provisioning_payload = json.loads(payload)
    try:
        result = prov.register()
    except Exception as e:  # the SDK's ServiceError: what a reader sees
        say(step="error", error=f"{type(e).__name__}: {e}", cause=str(e.__cause__))
        return 0
    st = result.registration_state
    raw = _seen[-1].get("registrationState") if _seen else None
    say(step="registered", status=result.status, assigned_hub=st.assigned_hub,
        device_id=st.device_id, substatus=st.sub_status,
        response_payload=json.loads(st.response_payload), raw=raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
