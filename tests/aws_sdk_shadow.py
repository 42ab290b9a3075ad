"""A device using the official AWS IoT Device SDK v2 for Python's shadow client
(awsiot.iotshadow), driven by tests/suite/aws_shadow.rs against the local AWS IoT Core.

argv: endpoint port thing cert_file key_file trust_pem_file
Steps (one JSON line each):
  reported   UpdateShadow reported {"color": "red"} -> update/accepted (version)
  got        GetShadow -> get/accepted (reported, version)
  delta      waits (20 s) for update/delta, which the test causes with
             `chainsmith aws shadow update THING --desired '{"color": "green"}'`
  named      UpdateNamedShadow "config" reported {"mode": "eco"} -> accepted (version)
  conflict   UpdateShadow with a stale version -> update/rejected (code, message)
Exits 0 when every step happened, 4 when one did not within its wait.
"""
import json
import sys
import threading

from awscrt import mqtt
from awsiot import iotshadow, mqtt_connection_builder

QOS = mqtt.QoS.AT_LEAST_ONCE
WAIT = 20
_say_lock = threading.Lock()


def say(**kv):
    with _say_lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


class Inbox:
    """The latest response on each kind of topic, and an event per kind."""

    def __init__(self):
        self.got = {}
        self.events = {}

    def on(self, kind):
        self.events[kind] = threading.Event()

        def callback(response):
            self.got[kind] = response
            self.events[kind].set()

        return callback

    def wait(self, kind):
        if not self.events[kind].wait(WAIT):
            say(step="timeout", waiting_for=kind)
            sys.exit(4)
        self.events[kind].clear()
        return self.got[kind]


def main():
    endpoint, port, thing, cert, key, trust = sys.argv[1:7]
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=endpoint,
        port=int(port),
        cert_filepath=cert,
        pri_key_filepath=key,
        ca_filepath=trust,
        client_id=thing,
        clean_session=True,
        keep_alive_secs=30,
    )
    conn.connect().result(timeout=10)
    shadow = iotshadow.IotShadowClient(conn)
    inbox = Inbox()
    subs = [
        shadow.subscribe_to_update_shadow_accepted(
            iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
            inbox.on("update_accepted")),
        shadow.subscribe_to_update_shadow_rejected(
            iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing), QOS,
            inbox.on("update_rejected")),
        shadow.subscribe_to_get_shadow_accepted(
            iotshadow.GetShadowSubscriptionRequest(thing_name=thing), QOS,
            inbox.on("get_accepted")),
        shadow.subscribe_to_shadow_delta_updated_events(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing), QOS,
            inbox.on("delta")),
        shadow.subscribe_to_update_named_shadow_accepted(
            iotshadow.UpdateNamedShadowSubscriptionRequest(thing_name=thing,
                                                           shadow_name="config"), QOS,
            inbox.on("named_accepted")),
    ]
    for future, _ in subs:
        future.result(timeout=10)
    say(step="subscribed")

    shadow.publish_update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, client_token="t-reported",
        state=iotshadow.ShadowState(reported={"color": "red"})), QOS).result(timeout=10)
    r = inbox.wait("update_accepted")
    say(step="reported", version=r.version, client_token=r.client_token)

    shadow.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing), QOS).result(timeout=10)
    r = inbox.wait("get_accepted")
    say(step="got", reported=r.state.reported, version=r.version)

    d = inbox.wait("delta")
    say(step="delta", state=d.state, version=d.version)

    shadow.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
        thing_name=thing, shadow_name="config",
        state=iotshadow.ShadowState(reported={"mode": "eco"})), QOS).result(timeout=10)
    r = inbox.wait("named_accepted")
    say(step="named", version=r.version, reported=r.state.reported)

    shadow.publish_update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, version=1,
        state=iotshadow.ShadowState(reported={"color": "blue"})), QOS).result(timeout=10)
    e = inbox.wait("update_rejected")
    say(step="conflict", code=e.code, message=e.message)

    conn.disconnect().result(timeout=10)
    say(step="done")


if __name__ == "__main__":
    main()
