"""A device on the official AWS IoT Device SDK v2 for Python (awsiotsdk), driven by
tests/suite/aws_broker.rs against the local AWS IoT Core.

argv: mode endpoint port client_id cert_file key_file trust_pem_file
modes:
  roundtrip  subscribe to dev/CLIENT/echo, publish there at QoS 1, receive it back
  hold       connect, then report being disconnected (a second connection took over)
  denied     publish at QoS 1 to dev/CLIENT/forbidden, which the test's policy denies
Prints one JSON line per step; exits 0 when the mode's steps all happened.
"""
import json
import sys
import threading

from awscrt import mqtt
from awsiot import mqtt_connection_builder

_say_lock = threading.Lock()


def say(**kv):
    # One write per line under a lock: the SDK calls back on its own threads.
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


def main():
    mode, endpoint, port, client_id, cert, key, trust = sys.argv[1:8]
    interrupted = threading.Event()

    def on_interrupted(connection, error, **kwargs):
        say(step="interrupted", error=str(error))
        interrupted.set()

    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=endpoint,
        port=int(port),
        cert_filepath=cert,
        pri_key_filepath=key,
        ca_filepath=trust,
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
        on_connection_interrupted=on_interrupted,
    )
    try:
        conn.connect().result(timeout=10)
    except Exception as e:  # the refusal the SDK saw, for the test to check
        say(step="connect_failed", error=f"{type(e).__name__}: {e}")
        sys.exit(3)
    say(step="connected")

    if mode == "roundtrip":
        got = threading.Event()
        topic = f"dev/{client_id}/echo"

        def on_message(topic, payload, **kwargs):
            say(step="message", topic=topic, payload=payload.decode())
            got.set()

        sub, _ = conn.subscribe(topic=topic, qos=mqtt.QoS.AT_LEAST_ONCE, callback=on_message)
        say(step="subscribed", granted=int(sub.result(timeout=10)["qos"]))
        pub, _ = conn.publish(topic=topic, payload=b"hello from the SDK", qos=mqtt.QoS.AT_LEAST_ONCE)
        pub.result(timeout=10)
        say(step="published")
        if not got.wait(10):
            say(step="no_message")
            sys.exit(4)
    elif mode == "hold":
        if not interrupted.wait(20):
            say(step="never_interrupted")
            sys.exit(4)
        return
    elif mode == "denied":
        pub, _ = conn.publish(topic=f"dev/{client_id}/forbidden", payload=b"x",
                              qos=mqtt.QoS.AT_LEAST_ONCE)
        try:
            pub.result(timeout=5)
            say(step="puback")
        except Exception as e:
            say(step="publish_failed", error=f"{type(e).__name__}: {e}")
        if not interrupted.wait(10):
            say(step="never_interrupted")
            sys.exit(4)
        return
    conn.disconnect().result(timeout=10)
    say(step="done")


if __name__ == "__main__":
    main()
