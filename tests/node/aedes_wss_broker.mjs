// An independent MQTT broker over TLS WebSockets for tests/suite/transport_aedes.rs: the npm
// `aedes` broker behind an HTTPS server from Node's `https` and the `ws` package, with mutual
// TLS (client certificates from `ca` required). argv: cert key ca [path]
// Prints {"port":N} once listening; runs until killed.
import fs from 'node:fs';
import https from 'node:https';
import { Aedes } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';

const [cert, key, ca, path = '/mqtt'] = process.argv.slice(2);
const aedes = await Aedes.createBroker();
const server = https.createServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  ca: fs.readFileSync(ca),
  requestCert: true,
  rejectUnauthorized: true,
});
const wss = new WebSocketServer({
  server,
  path,
  handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
});
wss.on('connection', (websocket, req) => {
  aedes.handle(createWebSocketStream(websocket), req);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
