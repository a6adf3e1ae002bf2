"""Checks the 3D Slicer module (slicer/MedicoSAM) outside Slicer: pyflakes finds no error in any of its files
(undefined names, unused imports, syntax), and its Slicer-independent part (MedicoSAMLib.server) starts the
real `medico-cli serve`, reads the port, sees the model in /info/ and stops it.

    python slicer_module_check.py SLICER_DIR MEDICO_CLI MODEL

Prints one JSON report; cli/tests/cli/slicer_cli.rs checks it.
"""

import glob
import json
import os
import subprocess
import sys


def main():
    slicer_dir, medico_cli, model = sys.argv[1:4]
    files = sorted(glob.glob(os.path.join(slicer_dir, "MedicoSAM", "**", "*.py"), recursive=True))
    flakes = subprocess.run([sys.executable, "-m", "pyflakes", *files], capture_output=True, text=True)
    sys.path.insert(0, os.path.join(slicer_dir, "MedicoSAM"))
    from MedicoSAMLib.server import MedicoServer, find_executable

    os.environ["MEDICO_CLI"] = medico_cli
    executable = find_executable()
    server = MedicoServer(executable, models=[model], threads=1)
    url = server.start()
    info = server.info()
    running = server.is_running()
    code = server.stop()
    print(json.dumps({
        "files": [os.path.relpath(f, slicer_dir) for f in files],
        "pyflakes_returncode": flakes.returncode,
        "pyflakes_output": flakes.stdout + flakes.stderr,
        "executable": executable,
        "url": url,
        "models": sorted(info["models"]),
        "model_type": info["models"][model]["type"],
        "was_running": running,
        "exit_code": code,
        "log": server.log,
    }))


if __name__ == "__main__":
    main()
