// The Azure IoT Node SDK provisioning a device through the local DPS (group enrollment), then
// the Node device client connecting to the assigned hub and sending one message.
// Driven by tests/suite/dps_sdk.rs (MQTT) and dps_https.rs (Http); the hub's server CA comes
// in NODE_EXTRA_CA_CERTS.
// argv: registrationId idScope certChainFile keyFile [mqtt|http] (the provisioning transport;
// default mqtt)
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvMqtt } = require('azure-iot-provisioning-device-mqtt');
const { Http: ProvHttp } = require('azure-iot-provisioning-device-http');
const { X509Security } = require('azure-iot-security-x509');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const [registrationId, idScope, certFile, keyFile, transport = 'mqtt'] = process.argv.slice(2);
const provTransports = { mqtt: () => new ProvMqtt(), http: () => new ProvHttp() };
if (!provTransports[transport]) {
  console.error(`transport ${transport} is not mqtt or http`);
  process.exit(2);
}
const say = (o) => console.log(JSON.stringify(o));
const cert = fs.readFileSync(certFile, 'utf8');
const key = fs.readFileSync(keyFile, 'utf8');

const security = new X509Security(registrationId, { cert, key });
const prov = ProvisioningDeviceClient.create('localhost', idScope, provTransports[transport](), security);
prov.setProvisioningPayload({ modelId: 'dtmi:com:example:Thermostat;1' });
prov.register((err, result) => {
  if (err) {
    say({ step: 'error', error: String(err), name: err.name });
    process.exit(0);
  }
  say({ step: 'registered', assignedHub: result.assignedHub, deviceId: result.deviceId, substatus: result.substatus });
  const client = Client.fromConnectionString(
    `HostName=${result.assignedHub};DeviceId=${result.deviceId};x509=true`, Mqtt);
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
