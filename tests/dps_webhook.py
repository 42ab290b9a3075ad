"""A custom allocation webhook for the local DPS's tests (tests/suite/dps_allocation.rs):
Python's http.server on 127.0.0.1, a free port printed as the first line of stdout.

argv: mode record_file
  ok        answer 200 with iotHubHostName "localhost", an initialTwin and a payload that
            echoes the device's payload
  slow      sleep 5 s, then answer as ok (the hub under test gives up sooner)
  notjson   answer 200 with an HTML page
  wronghub  answer 200 naming a hub DPS is not linked to
Every request body is appended to record_file as one JSON line.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, RECORD = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = json.loads(body)
        with open(RECORD, "a") as f:
            f.write(json.dumps({"path": self.path,
                                "content_type": self.headers.get("Content-Type"),
                                "body": request}) + "\n")
        if MODE == "slow":
            time.sleep(5)
        if MODE == "notjson":
            self.answer(200, b"<html>oops</html>", "text/html")
            return
        hub = "elsewhere.azure-devices.net" if MODE == "wronghub" else "localhost"
        device_payload = request.get("deviceRuntimeContext", {}).get("payload")
        reply = {
            "iotHubHostName": hub,
            "initialTwin": {
                "tags": {"site": "hall-7", "from": "webhook"},
                "properties": {"desired": {"interval": 30}},
            },
            "payload": {"greeting": "hello from the webhook", "yours": device_payload},
        }
        self.answer(200, json.dumps(reply).encode(), "application/json")

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
