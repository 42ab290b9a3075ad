// IoT Central's X.509 guide, the Node way, unmodified: the provisioning SDK over MQTT to the
// global endpoint (IOTHUB_DEVICE_DPS_ENDPOINT, default global.azure-devices-provisioning.net),
// the ID scope, device id and PEM files from the guide's environment variables, no server
// certificate passed anywhere (so Node trusts the hub only through NODE_EXTRA_CA_CERTS or
// --use-openssl-ca), then the device client to the assigned hub and one telemetry message.
// Driven by tests/suite/dps_sdk.rs. Prints one JSON line per step.
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvProtocol } = require('azure-iot-provisioning-device-mqtt');
const { X509Security } = require('azure-iot-security-x509');
const { Client, Message } = require('azure-iot-device');
const { Mqtt: Protocol } = require('azure-iot-device-mqtt');

const say = (o) => console.log(JSON.stringify(o));
const provisioningHost = process.env.IOTHUB_DEVICE_DPS_ENDPOINT || 'global.azure-devices-provisioning.net';
const idScope = process.env.IOTHUB_DEVICE_DPS_ID_SCOPE;
const registrationId = process.env.IOTHUB_DEVICE_DPS_DEVICE_ID;
const deviceCert = {
  cert: fs.readFileSync(process.env.IOTHUB_DEVICE_X509_CERT).toString(),
  key: fs.readFileSync(process.env.IOTHUB_DEVICE_X509_KEY).toString(),
};

const security = new X509Security(registrationId, deviceCert);
const prov = ProvisioningDeviceClient.create(provisioningHost, idScope, new ProvProtocol(), security);
prov.setProvisioningPayload({ modelId: 'dtmi:com:example:TemperatureController;2' });
prov.register((err, result) => {
  if (err) {
    say({ step: 'error', where: 'provisioning', error: String(err), name: err.name });
    process.exit(1);
  }
  say({ step: 'registered', host: provisioningHost, assignedHub: result.assignedHub, deviceId: result.deviceId });
  const client = Client.fromConnectionString(
    `HostName=${result.assignedHub};DeviceId=${result.deviceId};x509=true`, Protocol);
  client.setOptions(deviceCert);
  client.open((e) => {
    if (e) {
      say({ step: 'error', where: 'hub', error: String(e) });
      process.exit(1);
    }
    client.sendEvent(new Message(JSON.stringify({ temperature: 21 })), (e2) => {
      if (e2) {
        say({ step: 'error', where: 'telemetry', error: String(e2) });
        process.exit(1);
      }
      say({ step: 'sent' });
      client.close(() => process.exit(0));
    });
  });
});
