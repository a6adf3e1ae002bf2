"""Drives `medico-cli serve` with MONAI Label's own clients, as their modules call them.

    python monailabel_clients.py roundtrip URL VOLUME OUTDIR   # both clients: info, session, infer, delete
    python monailabel_clients.py load URL VOLUME OUTDIR CLIENTS REQUESTS SERVER_PID
    python monailabel_clients.py clicks URL VOLUME OUTDIR COUNT I J K   # one client, COUNT clicks at (I, J, K)

Run with the venv of scripts/setup.sh (.deps/monailabel-client: the monailabel 0.8.5 wheel, --no-deps, and
requests). `MONAILabelClient` comes from the wheel's `monailabel.client`; the 3D Slicer module's client is
loaded from the wheel's copy of the Slicer plug-in (monailabel/plugins/slicer/MONAILabel/MONAILabelLib). Prints
one JSON report on standard output; the Rust tests (cli/tests/cli/serve_cli.rs, annotator_browser.rs) check it.
"""

import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import warnings

warnings.simplefilter("ignore", DeprecationWarning)  # the clients import `cgi`

from monailabel.client import MONAILabelClient  # noqa: E402
import monailabel  # noqa: E402


def slicer_client_module():
    """The client 3D Slicer's MONAI Label module uses, from the wheel's data files."""
    venv = sys.prefix
    path = os.path.join(venv, "monailabel", "plugins", "slicer", "MONAILabel", "MONAILabelLib", "client.py")
    spec = importlib.util.spec_from_file_location("slicer_monailabel_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def slicer_infer(client, model, image_id, params, session_id):
    """What MONAILabelLogic.infer (MONAILabel.py) does before calling its client."""
    params["result_extension"] = ".nrrd"
    params["result_dtype"] = "uint8"
    return client.infer(model, image_id, params, None, None, session_id)


def roundtrip(url, volume, outdir):
    report = {"monailabel_version": monailabel.__version__}
    tmp = tempfile.mkdtemp(dir=outdir)
    # MONAILabelClient (monailabel.client), NIfTI results.
    client = MONAILabelClient(url, tmpdir=tmp)
    info = client.info()
    model = next(iter(info["models"]))
    report["info"] = info
    report["auth_enabled"] = client.auth_enabled()
    created = client.create_session(volume)
    session_id = created["session_id"]
    report["session"] = client.get_session(session_id)
    clicks = {"foreground": [[98, 130, 90]], "background": [[40, 40, 90]], "label": "brain"}
    path, params = client.infer(model, "ignored", dict(clicks), session_id=session_id)
    report["clicks_nifti"] = {"file": keep(path, outdir, "clicks.nii.gz"), "params": params}
    box = {"roi": [140, 60, 50, 200, 88, 92], "slice": 90, "foreground": [], "background": []}
    path, params = client.infer(model, "ignored", dict(box), session_id=session_id)
    report["box_nifti"] = {"file": keep(path, outdir, "box.nii.gz"), "params": params}
    # The 3D variant: the click's slice, then propagation through the volume.
    path, params = client.infer(model + "-3d", "ignored", {"foreground": [[98, 130, 90]]}, session_id=session_id)
    report["clicks_3d"] = {"file": keep(path, outdir, "clicks3d.nii.gz"), "params": params}
    report["removed"] = client.remove_session(session_id)

    # The Slicer module's client, called as MONAILabel.py does: the scene's volume saved to a temporary
    # .nii.gz, uploaded as a session, then deepgrow requests with .nrrd results.
    module, report["slicer_client"] = slicer_client_module()
    slicer = module.MONAILabelClient(url, tmp, "slicer-test")
    report["slicer_auth_enabled"] = slicer.auth_enabled()
    slicer.info()
    in_file = tempfile.NamedTemporaryFile(suffix=".nii.gz", dir=tmp).name
    shutil.copy(volume, in_file)
    session_id = slicer.create_session(in_file)["session_id"]
    if not slicer.get_session(session_id):
        raise SystemExit("the session just created is not found")
    params = {"label": "brain", "foreground": [[98, 130, 90]], "background": [[40, 40, 90]], "slice": 90}
    path, params = slicer_infer(slicer, model, "MNI152", params, session_id)
    report["clicks_nrrd"] = {"file": keep(path, outdir, "clicks.nrrd"), "params": params}
    params = {"label": "brain", "foreground": [], "background": [], "roi": [140, 60, 50, 200, 88, 92], "slice": 90}
    path, params = slicer_infer(slicer, model, "MNI152", params, session_id)
    report["box_nrrd"] = {"file": keep(path, outdir, "box.nrrd"), "params": params}
    # A 3D model as the Slicer module calls it (is_3d: no slice; the ROI's k range bounds propagation).
    params = {"label": "brain", "foreground": [], "background": [], "roi": [140, 60, 50, 200, 85, 95]}
    path, params = slicer_infer(slicer, model + "-3d", "MNI152", params, session_id)
    report["box_3d_nrrd"] = {"file": keep(path, outdir, "box3d.nrrd"), "params": params}
    slicer.remove_session(session_id)
    try:
        slicer.get_session(session_id)
        report["deleted_session_status"] = 200
    except module.MONAILabelClientException as e:
        report["deleted_session_status"] = e.status_code
    return report


def keep(path, outdir, name):
    dest = os.path.join(outdir, name)
    shutil.move(path, dest)
    return dest


def load(url, volume, outdir, clients, requests, pid):
    """`clients` threads, each with its own client and session, each sending `requests` click requests on
    random slices; latencies of every request and the server's peak resident memory."""
    latencies, errors, lock = [], [], threading.Lock()
    tmp = tempfile.mkdtemp(dir=outdir)

    def one_client(index):
        rng = random.Random(index)
        client = MONAILabelClient(url, tmpdir=tmp, client_id=f"load-{index}")
        try:
            session_id = client.create_session(volume)["session_id"]
            model = next(iter(client.info()["models"]))
        except Exception as e:  # noqa: BLE001 - every failure is counted
            with lock:
                errors.append(f"client {index}: {e}")
            return
        for _ in range(requests):
            z = rng.randrange(60, 120)
            params = {"foreground": [[rng.randrange(60, 140), rng.randrange(60, 170), z]], "background": []}
            start = time.perf_counter()
            try:
                path, _ = client.infer(model, "ignored", params, session_id=session_id)
                os.remove(path)
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"client {index}: {e}")
        client.remove_session(session_id)

    start = time.perf_counter()
    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()

    def percentile(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else None

    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return {
        "clients": clients,
        "requests_per_client": requests,
        "completed": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "latency_ms": {"p50": percentile(50), "p90": percentile(90), "p99": percentile(99), "max": percentile(100)},
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    }


def clicks(url, volume, outdir, count, voxel):
    """One MONAILabelClient session: a warm-up click, then `count` clicks at `voxel` (a slice already seen);
    each request's latency (the mask file included), for comparison with the web annotator's."""
    tmp = tempfile.mkdtemp(dir=outdir)
    client = MONAILabelClient(url, tmpdir=tmp, client_id="clicks")
    session_id = client.create_session(volume)["session_id"]
    model = next(iter(client.info()["models"]))
    params = {"foreground": [voxel], "background": []}
    latencies = []
    for _ in range(count + 1):
        start = time.perf_counter()
        path, _ = client.infer(model, "ignored", params, session_id=session_id)
        latencies.append(1000 * (time.perf_counter() - start))
        os.remove(path)
    client.remove_session(session_id)
    timed = sorted(latencies[1:])
    return {"clicks": count, "voxel": voxel, "latency_ms": latencies[1:], "median_ms": timed[len(timed) // 2]}


def main():
    mode, url, volume, outdir = sys.argv[1:5]
    if mode == "roundtrip":
        report = roundtrip(url, volume, outdir)
    elif mode == "load":
        clients, requests, pid = (int(v) for v in sys.argv[5:8])
        report = load(url, volume, outdir, clients, requests, pid)
    elif mode == "clicks":
        count, i, j, k = (int(v) for v in sys.argv[5:9])
        report = clicks(url, volume, outdir, count, [i, j, k])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
