#!/usr/bin/env python3
"""Test fixture for deploy/check.sh: a fake Aegis health API (HTTPS) and an alert receiver (HTTP).

Writes "<receiver_port> <api_port>" to --port-file once both listen. The health status served is read from
--status-file on every request (ok | degraded), so the test can change it between runs. Every POST the receiver
gets is appended to --log as one JSON line {"path": ..., "body": ...}.
"""
import argparse
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--status-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n).decode("utf-8", "replace")
            with lock, open(args.log, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            with open(args.status_file) as f:
                status = f.read().strip()
            body = json.dumps({"status": status}).encode()
            self.send_response(200 if self.path == "/api/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    recv = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    api.socket = ctx.wrap_socket(api.socket, server_side=True)
    threading.Thread(target=recv.serve_forever, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(f"{recv.server_address[1]} {api.server_address[1]}\n")
    import os

    os.replace(args.port_file + ".tmp", args.port_file)
    api.serve_forever()


if __name__ == "__main__":
    main()
