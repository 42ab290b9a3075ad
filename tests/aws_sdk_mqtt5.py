"""A device on the official AWS IoT Device SDK v2 for Python's MQTT 5 client
(awsiot.mqtt5_client_builder), driven by tests/suite/aws_rules.rs: the reason codes it sees
for a publish and a subscribe its policy denies.

argv: endpoint port client_id cert_file key_file trust_pem_file
Prints one JSON line per step; exits 0 when it connected and both answers came.
"""
import json
import sys
import threading

from awscrt import mqtt5
from awsiot import mqtt5_client_builder


def say(**kv):
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


def main():
    endpoint, port, client_id, cert, key, trust = sys.argv[1:7]
    connected, failed = threading.Event(), threading.Event()
    client = mqtt5_client_builder.mtls_from_path(
        endpoint=endpoint, port=int(port), cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=trust, client_id=client_id,
        on_lifecycle_connection_success=lambda d: connected.set(),
        on_lifecycle_connection_failure=lambda d: failed.set())
    client.start()
    if not connected.wait(10):
        say(step="connect_failed")
        client.stop()
        sys.exit(3)
    say(step="connected")
    pub = client.publish(mqtt5.PublishPacket(
        topic=f"dev/{client_id}/forbidden", payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10)
    say(step="puback", reason=int(pub.puback.reason_code), name=pub.puback.reason_code.name)
    sub = client.subscribe(mqtt5.SubscribePacket(subscriptions=[
        mqtt5.Subscription(topic_filter="elsewhere/#", qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(10)
    code = sub.reason_codes[0]
    say(step="suback", reason=int(code), name=code.name)
    # Still connected after both denials (MQTT 5 answers, it does not disconnect).
    ok = client.publish(mqtt5.PublishPacket(
        topic=f"dev/{client_id}/fine", payload=b"y", qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10)
    say(step="puback_after", reason=int(ok.puback.reason_code))
    client.stop()


if __name__ == "__main__":
    main()
