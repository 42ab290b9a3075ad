// A device on the official Azure IoT Node SDK, driven by tests/suite/transport_sdk.rs.
// argv: transport (Amqp|AmqpWs|Mqtt|MqttWs) device_id cert_file key_file trust_pem_file
// Prints one JSON line per step; the Rust side sends a C2D message and invokes a method
// after "ready", and this script exits 0 once both arrived. On a connection error it prints
// {"step":"error","name":...} and exits 2 (the refusal tests read it).
'use strict';
const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const [transportName, deviceId, cert, key, trust] = process.argv.slice(2);
const Transport = { Amqp, AmqpWs, Mqtt, MqttWs }[transportName];
const client = Client.fromConnectionString(
  `HostName=127.0.0.1;DeviceId=${deviceId};x509=true`, Transport);
client.setOptions({
  cert: fs.readFileSync(cert, 'utf8'),
  key: fs.readFileSync(key, 'utf8'),
  ca: fs.readFileSync(trust, 'utf8'),
});

const fail = (err, where) => {
  say({ step: 'error', where, name: err && err.constructor && err.constructor.name, message: String(err && err.message),
    detail: err && err.amqpError ? String(err.amqpError.description) : undefined });
  client.close(() => process.exit(2));
  setTimeout(() => process.exit(2), 2000);
};

async function main() {
  let gotC2d = false, gotMethod = false;
  const finish = () => {
    if (gotC2d && gotMethod) {
      say({ step: 'done', ok: true });
      client.close(() => process.exit(0));
    }
  };
  client.on('message', (msg) => {
    const props = {};
    for (const p of msg.properties.propertyList) props[p.key] = p.value;
    // A `settle` property asks for reject or abandon (AMQP settles them; MQTT cannot).
    if (props.settle === 'reject') return client.reject(msg, () => {});
    if (props.settle === 'abandon') return client.abandon(msg, () => {});
    say({ step: 'c2d', data: msg.data.toString(), props, message_id: msg.messageId });
    client.complete(msg, () => { gotC2d = true; finish(); });
  });
  client.on('error', (e) => say({ step: 'client-error', text: String(e && e.message) }));
  try {
    await client.open();
    say({ step: 'connected' });
    client.onDeviceMethod('reboot', (req, res) => {
      say({ step: 'method', name: req.methodName, payload: req.payload });
      res.send(200, { rebooted: true, echo: req.payload }, () => { gotMethod = true; finish(); });
    });
    for (let i = 0; i < 3; i++) {
      const t = 27 + i * 3;
      const m = new Message(JSON.stringify({ deviceId, messageId: i, temperature: t }));
      m.messageId = `msg-${i}`;
      m.correlationId = `corr-${i}`;
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('temperatureAlert', t > 30 ? 'true' : 'false');
      m.properties.add('slash/and space', 'a&b=c');
      await client.sendEvent(m);
    }
    say({ step: 'sent', count: 3 });
    const twin = await client.getTwin();
    say({ step: 'twin', twin: { desired: twin.properties.desired } });
    await new Promise((ok, ko) => twin.properties.reported.update(
      { firmware: '1.2.3', nested: { x: 1 } }, (e) => (e ? ko(e) : ok())));
    say({ step: 'patched' });
    say({ step: 'ready' });
  } catch (err) {
    fail(err, 'operation');
  }
  setTimeout(() => { say({ step: 'done', ok: false }); process.exit(3); }, 40000);
}
main();
