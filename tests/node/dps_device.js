// The Azure IoT Node SDK provisioning a device through the local DPS (group enrollment), then
// the Node device client connecting to the assigned hub and sending one message.
// Driven by tests/suite/dps_sdk.rs, dps_amqp.rs and dps_https.rs; the hub's server CA comes in
// NODE_EXTRA_CA_CERTS. The transport (default mqtt) is used for DPS and, but for http (DPS's
// REST API, then MQTT to the hub), for the hub: mqtt (8883), amqp (5671), amqpws (AMQP over
// WebSockets on 443) or http (443).
// argv: registrationId idScope certChainFile keyFile [mqtt|amqp|amqpws|http]
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { X509Security } = require('azure-iot-security-x509');
const { Client, Message } = require('azure-iot-device');

const [registrationId, idScope, certFile, keyFile, transport = 'mqtt'] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify(o));
const cert = fs.readFileSync(certFile, 'utf8');
const key = fs.readFileSync(keyFile, 'utf8');

const transports = {
  mqtt: () => [new (require('azure-iot-provisioning-device-mqtt').Mqtt)(), require('azure-iot-device-mqtt').Mqtt],
  amqp: () => [new (require('azure-iot-provisioning-device-amqp').Amqp)(), require('azure-iot-device-amqp').Amqp],
  amqpws: () => [new (require('azure-iot-provisioning-device-amqp').AmqpWs)(), require('azure-iot-device-amqp').AmqpWs],
  http: () => [new (require('azure-iot-provisioning-device-http').Http)(), require('azure-iot-device-mqtt').Mqtt],
};
if (!transports[transport]) {
  say({ step: 'error', error: `unknown transport ${transport}; use mqtt, amqp, amqpws or http` });
  process.exit(2);
}
const [provTransport, DeviceTransport] = transports[transport]();

const security = new X509Security(registrationId, { cert, key });
const prov = ProvisioningDeviceClient.create('localhost', idScope, provTransport, security);
prov.setProvisioningPayload({ modelId: 'dtmi:com:example:Thermostat;1' });
prov.register((err, result) => {
  if (err) {
    // Over AMQP a refusal is the rejected delivery's AMQP error: condition and DPS's JSON.
    const amqp = err.amqpError || err;
    say({ step: 'error', error: String(err), name: err.name, condition: amqp.condition, description: amqp.description });
    process.exit(0);
  }
  say({ step: 'registered', assignedHub: result.assignedHub, deviceId: result.deviceId, substatus: result.substatus });
  const client = Client.fromConnectionString(
    `HostName=${result.assignedHub};DeviceId=${result.deviceId};x509=true`, DeviceTransport);
  client.setOptions({ cert, key });
  client.open((e) => {
    if (e) {
      say({ step: 'error', error: String(e) });
      process.exit(1);
    }
    const m = new Message(JSON.stringify({ deviceId: result.deviceId, messageId: 0, temperature: 27, humidity: 71 }));
    client.sendEvent(m, (e2) => {
      if (e2) {
        say({ step: 'error', error: String(e2) });
        process.exit(1);
      }
      say({ step: 'sent' });
      client.close(() => process.exit(0));
    });
  });
});
