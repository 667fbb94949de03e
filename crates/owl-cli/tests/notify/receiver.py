"""Loopback receivers for the notification tests.

webhook OUT SECRET HOLD: an HTTP server that verifies every delivery with the official
    `standardwebhooks` library and appends what it saw to OUT (JSON lines). /ok accepts,
    /flaky answers 500 to the first try of each message, /gone answers 410, /hold answers 503
    while the file HOLD exists.
smtp OUT REFUSE [CERT KEY]: an aiosmtpd SMTP server that answers 451 to the first REFUSE
    messages and then stores each message as a file in the directory OUT; with CERT and KEY it
    offers STARTTLS and requires it.
The port is printed on the first line of stdout.
"""

import json
import os
import sys
import threading
import time


def webhook(out, secret, hold):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from standardwebhooks.webhooks import Webhook

    lock = threading.Lock()
    seen = set()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                Webhook(secret).verify(body, headers)
                verified, error = True, None
            except Exception as e:  # the library's verification error
                verified, error = False, repr(e)
            msg = headers.get("webhook-id")
            with lock:
                first = (self.path, msg) not in seen
                seen.add((self.path, msg))
                if not verified:
                    status = 401
                elif self.path == "/flaky":
                    status = 500 if first else 200
                elif self.path == "/gone":
                    status = 410
                elif self.path == "/hold":
                    status = 503 if os.path.exists(hold) else 200
                else:
                    status = 200
                rec = {"path": self.path, "id": msg, "timestamp": headers.get("webhook-timestamp"),
                       "verified": verified, "error": error, "status": status, "body": body.decode()}
                with open(out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"not now")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def smtp(out, refuse, cert=None, key=None):
    from aiosmtpd.controller import Controller

    os.makedirs(out, exist_ok=True)
    state = {"refused": 0, "n": 0}

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if state["refused"] < refuse:
                state["refused"] += 1
                return "451 4.3.0 Try again later"
            state["n"] += 1
            path = os.path.join(out, "%03d.eml" % state["n"])
            with open(path + ".partial", "wb") as f:
                f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
                f.write(b"X-Was-TLS: " + (b"yes" if session.ssl else b"no") + b"\r\n")
                f.write(envelope.original_content)
            os.rename(path + ".partial", path)
            return "250 2.0.0 Message accepted for delivery"

    kwargs = {}
    if cert:
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        kwargs = {"tls_context": ctx, "require_starttls": True}
    # The controller needs a port it can name before it starts: take a free one.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
    c.start()
    print(port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "webhook":
        webhook(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        smtp(sys.argv[2], int(sys.argv[3]), *(sys.argv[4:6]))
