#!/usr/bin/env python3
"""The slow attacks on `medico-cli serve` (the quick ones are cli/tests/cli/serve_attacks.rs, run by CI).

Starts the server (release build, the given model), then:
  slowloris  N connections each sending half a header, one byte every few seconds: all must be dropped
             within the header timeout, and a normal request answered meanwhile;
  trickle    M uploads sending a byte a second: all must be cut off within the body timeout;
  fairness   one client walks a volume with MODEL-3d while another clicks on a slice already seen: each
             click's latency (the issue's bar: under 200 ms on 2 cores);
and prints one JSON report with the server's peak RSS. Standard library only.

    python3 scripts/serve_attacks.py [--binary target/release/medico-cli] [--model medico-lite]
"""

import argparse
import json
import os
import socket
import subprocess
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOLUME = os.path.join(ROOT, "..", "shared", "data", "volumes", "mni152_t1.nii.gz")


def start(binary, model, extra):
    proc = subprocess.Popen(
        [binary, "serve", "--model", model, "--port", "0", "--json", "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = proc.stdout.readline()
    return proc, json.loads(line)["port"]


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def request(port, method, path, body=b"", content_type="text/plain", timeout=600):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def multipart(fields):
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def session(port):
    with open(VOLUME, "rb") as f:
        body, ct = multipart([("files", "mni.nii.gz", f.read())])
    status, answer = request(port, "PUT", "/session/", body, ct)
    assert status == 200, answer
    return json.loads(answer)["session_id"]


def infer(port, model, sid, params):
    body, ct = multipart([("params", None, json.dumps(params).encode())])
    start = time.perf_counter()
    status, answer = request(port, "POST", f"/infer/{model}?session_id={sid}&output=json", body, ct)
    return status, (time.perf_counter() - start) * 1000, answer


def slowloris(port, connections, header_timeout):
    sockets = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /info/ HTTP/1.1\r\nHost: localhost\r\n")
        sockets.append(s)
    start = time.perf_counter()
    status, _ = request(port, "GET", "/info/", timeout=10)
    answered_ms = (time.perf_counter() - start) * 1000
    dropped = 0
    deadline = start + header_timeout + 10
    for s in sockets:
        s.settimeout(max(0.1, deadline - time.perf_counter()))
        try:
            while True:
                s.sendall(b"X")
                if s.recv(1) == b"":
                    break
        except OSError:
            pass
        if time.perf_counter() < deadline:
            dropped += 1
        s.close()
    return {"connections": connections, "dropped": dropped, "info_status": status, "info_ms": round(answered_ms, 1),
            "seconds": round(time.perf_counter() - start, 1)}


def trickle(port, uploads, body_timeout):
    def one(results):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"PUT /session/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 1000000\r\n\r\n--b\r\n")
        start = time.perf_counter()
        s.settimeout(1.0)
        answer = b""
        while time.perf_counter() - start < body_timeout + 60:
            try:
                s.sendall(b"x")
                answer = s.recv(4096)
                if answer or answer == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        results.append({"seconds": round(time.perf_counter() - start, 1), "answer": answer[:12].decode(errors="replace")})
        s.close()

    results = []
    threads = [threading.Thread(target=one, args=(results,)) for _ in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def fairness(port, model):
    walk_sid, click_sid = session(port), session(port)
    click = {"foreground": [[98, 130, 90]]}
    status, first_ms, _ = infer(port, model, click_sid, click)
    assert status == 200
    walk = {}

    def walker():
        # The README demo's box on the axial slices 40-140: a walk of ~100 slices, each one encoded.
        walk["status"], walk["ms"], answer = infer(port, model + "-3d", walk_sid, {"roi": [27, 170, 28, 208, 40, 140]})
        walk["slices"] = len(json.loads(answer).get("slices", [])) if walk["status"] == 200 else answer.decode()

    thread = threading.Thread(target=walker)
    thread.start()
    time.sleep(2.0)
    latencies = []
    while thread.is_alive() and len(latencies) < 50:
        status, ms, _ = infer(port, model, click_sid, click)
        assert status == 200
        latencies.append(round(ms, 1))
        time.sleep(0.2)
    thread.join()
    latencies.sort()
    return {"first_click_ms": round(first_ms, 1), "walk": walk, "clicks_during_walk": len(latencies),
            "median_ms": latencies[len(latencies) // 2] if latencies else None,
            "max_ms": latencies[-1] if latencies else None}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "medico-cli"))
    parser.add_argument("--model", default="medico-lite")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=10)
    args = parser.parse_args()
    proc, port = start(args.binary, args.model, ["--header-timeout", "5", "--body-timeout", "5", "--threads", "2"])
    try:
        report = {"model": args.model, "slowloris": slowloris(port, args.connections, 5),
                  "trickle": trickle(port, args.uploads, 5), "fairness": fairness(port, args.model),
                  "peak_rss_mb": peak_rss_mb(proc.pid)}
        start_stop = time.perf_counter()
        proc.terminate()
        proc.wait(timeout=60)
        report["sigterm_seconds"] = round(time.perf_counter() - start_stop, 2)
        report["exit_code"] = proc.returncode
        print(json.dumps(report, indent=1))
    finally:
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    main()
