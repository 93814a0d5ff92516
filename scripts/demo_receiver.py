"""The demo's webhook receiver: a local HTTP server standing in for an approvers' Slack channel.
It prints the port it listens on ("PORT n"), then one line per message it receives: the
message's text, as the channel would show it."""

import http.server
import json
import sys


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            text = json.loads(body).get("text", "")
        except ValueError:
            text = body.decode(errors="replace")
        print(f"[approvers channel] {text}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
