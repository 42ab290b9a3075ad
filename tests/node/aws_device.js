// A device on the official AWS IoT Device SDK v2 for JavaScript (aws-iot-device-sdk-v2),
// driven by tests/suite/aws_shadow.rs against the local AWS IoT Core.
// argv: endpoint port client_id cert_file key_file trust_pem_file
// Subscribes to dev/CLIENT/echo, publishes there at QoS 1 and receives it back, then updates
// its classic shadow's reported state with iotshadow and waits for update/accepted.
// Prints one JSON line per step; exits 0 when every step happened.
'use strict';
const { mqtt, iot, iotshadow } = require('aws-iot-device-sdk-v2');

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const within = (ms, what, p) =>
  Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(`no ${what} within ${ms} ms`)), ms))]);

async function main() {
  const [endpoint, port, clientId, cert, key, trust] = process.argv.slice(2);
  const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(cert, key)
    .with_certificate_authority_from_path(undefined, trust)
    .with_clean_session(true)
    .with_client_id(clientId)
    .with_endpoint(endpoint)
    .with_port(Number(port))
    .build();
  const conn = new mqtt.MqttClient().new_connection(config);
  await within(10000, 'CONNACK', conn.connect());
  say({ step: 'connected' });

  const topic = `dev/${clientId}/echo`;
  const got = new Promise((resolve) =>
    conn.subscribe(topic, mqtt.QoS.AtLeastOnce, (t, payload) =>
      resolve({ topic: t, payload: Buffer.from(payload).toString() })));
  await new Promise((r) => setTimeout(r, 100));
  await within(10000, 'PUBACK', conn.publish(topic, 'hello from node', mqtt.QoS.AtLeastOnce));
  const msg = await within(10000, 'message', got);
  say({ step: 'message', ...msg });

  const shadow = new iotshadow.IotShadowClient(conn);
  const accepted = new Promise((resolve, reject) =>
    shadow.subscribeToUpdateShadowAccepted({ thingName: clientId }, mqtt.QoS.AtLeastOnce,
      (error, response) => (error ? reject(error) : resolve(response))));
  await new Promise((r) => setTimeout(r, 100));
  await within(10000, 'PUBACK', shadow.publishUpdateShadow(
    { thingName: clientId, clientToken: 'node-1', state: { reported: { firmware: '2.1' } } },
    mqtt.QoS.AtLeastOnce));
  const r = await within(10000, 'update/accepted', accepted);
  say({ step: 'shadow', version: r.version, clientToken: r.clientToken, reported: r.state.reported });

  await conn.disconnect();
  say({ step: 'done' });
}

main().then(() => process.exit(0), (e) => {
  say({ step: 'failed', error: String(e) });
  process.exit(4);
});
