"""A loopback reverse proxy that adds owl's bearer token, for MCP test clients that cannot
send headers (the conformance suite). It stands in for owl's own port: `Host` and `Origin`
naming the proxy's port are rewritten to owl's, anything else (a rebinding attempt's
`Host: evil.example`) passes unchanged.

    auth_proxy.py UPSTREAM_HOST:PORT TOKEN    # prints the port it listens on
"""

import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM, TOKEN = sys.argv[1], sys.argv[2]
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(UPSTREAM, timeout=60)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP and k.lower() != "authorization":
                if k.lower() in ("host", "origin"):
                    v = v.replace(f":{MINE}", f":{THEIRS}")
                conn.putheader(k, v)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_DELETE = do_PUT = forward

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
MINE, THEIRS = server.server_address[1], UPSTREAM.rsplit(":", 1)[1]
print(MINE, flush=True)
server.serve_forever()
