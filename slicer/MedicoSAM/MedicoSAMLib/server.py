"""Starts and stops the bundled `medico-cli serve` on localhost, the way SlicerElastix runs its bundled
executables: a subprocess, its output read for what the module needs (here the `--json` startup line with the
port), stopped with the module. No Slicer imports: the MedicoSAM module uses it, and medico's tests run it
directly (cli/tests/clients/slicer_module_check.py).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request

#: How long to wait for the server to open its models and listen.
STARTUP_TIMEOUT_S = 120


def find_executable(module_dir=None):
    """medico-cli: $MEDICO_CLI, else beside the module (an extension's `bin`/`cli-modules` folders), else on
    PATH; None when nowhere."""
    candidates = []
    if os.environ.get("MEDICO_CLI"):
        candidates.append(os.environ["MEDICO_CLI"])
    name = "medico-cli.exe" if sys.platform == "win32" else "medico-cli"
    if module_dir:
        for sub in ("", "bin", os.path.join("..", "bin"), os.path.join("..", "cli-modules")):
            candidates.append(os.path.join(module_dir, sub, name))
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


class MedicoServer:
    """One `medico-cli serve` subprocess on 127.0.0.1 (a free port), its log kept for display."""

    def __init__(self, executable, models=("medico-lite",), threads=None, api_key=None):
        self.executable = executable
        self.models = list(models)
        self.threads = threads
        self.api_key = api_key
        self.process = None
        self.url = None
        self.log = []
        self._log_thread = None

    def command(self):
        """The command line that starts the server."""
        cmd = [self.executable, "serve", "--host", "127.0.0.1", "--port", "0", "--json"]
        for model in self.models:
            cmd += ["--model", model]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        return cmd

    def start(self):
        """Starts the server; returns its URL once it listens. Raises RuntimeError with its log otherwise."""
        if self.is_running():
            return self.url
        env = dict(os.environ)
        if self.api_key:
            env["MEDICO_API_KEY"] = self.api_key
        self.log = []
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        started = {}

        def read_startup_line():
            line = self.process.stdout.readline()
            try:
                started.update(json.loads(line))
            except ValueError:
                self.log.append(line.rstrip())

        reader = threading.Thread(target=read_startup_line, daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT_S)
        self._log_thread = threading.Thread(target=self._collect_log, daemon=True)
        self._log_thread.start()
        if started.get("event") != "listening":
            self.stop()
            raise RuntimeError("medico-cli serve did not start:\n" + "\n".join(self.log))
        self.url = started["url"]
        return self.url

    def _collect_log(self):
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            del self.log[:-500]

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def info(self):
        """The server's /info/ (what the MONAI Label module will show)."""
        request = urllib.request.Request(self.url + "/info/")
        if self.api_key:
            request.add_header("Authorization", "Bearer " + self.api_key)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self):
        """Stops the server (SIGTERM: requests in flight finish), killing it if it does not exit in 10 s;
        returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        self.url = None
        return code
