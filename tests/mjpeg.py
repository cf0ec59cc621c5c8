"""A live MJPEG-over-HTTP source on 127.0.0.1 for tests and benchmarks/live_latency.py: street-scene
JPEGs as multipart/x-mixed-replace at a fixed rate, which can drop for a while and come back."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from deploy_kit.synthetic import SceneSpec, generate_scene


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at `fps` on 127.0.0.1. Setting `down_until` (a monotonic
    time) drops the connection and answers 503 until then, as a camera that reboots; `stopped` for good."""

    def __init__(self, size: tuple[int, int] = (240, 320), fps: float = 30.0) -> None:
        frames = [generate_scene(5, i, SceneSpec(*size))[0] for i in range(3)]
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.down_until = 0.0
        self.sent = 0
        self.stopped = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if time.monotonic() < server.down_until or server.stopped.is_set():
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                while time.monotonic() >= server.down_until and not server.stopped.is_set():
                    jpeg = server.jpegs[server.sent % len(server.jpegs)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    server.sent += 1
                    time.sleep(1 / fps)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
