"""MedicoSAM: runs medico (medical Segment Anything on the CPU) inside 3D Slicer with nothing to install in
Slicer's Python. It starts the `medico-cli serve` bundled with the extension on localhost and points Slicer's
own MONAI Label module at it, whose interactive tools (clicks, ROI) then segment with medico's models.
"""

import logging
import os

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)

from MedicoSAMLib.server import MedicoServer, find_executable


class MedicoSAM(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "MedicoSAM"
        parent.categories = ["Segmentation"]
        parent.dependencies = []
        parent.contributors = ["medico developers"]
        parent.helpText = (
            "Starts medico's MONAI Label-compatible server (bundled medico-cli) on this computer and connects "
            "the MONAI Label module to it: segment with clicks and boxes using medico-lite on the CPU."
        )
        parent.acknowledgementText = "medico-lite builds on LiteMedSAM (Apache-2.0) and MedicoSAM's objective."
        slicer.app.connect("aboutToQuit()", MedicoSAMLogic.stop_shared)


class MedicoSAMLogic(ScriptedLoadableModuleLogic):
    """Owns the server process (one per Slicer session)."""

    shared = None

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.module_dir = os.path.dirname(os.path.abspath(__file__))

    def start(self, executable, models, threads):
        if MedicoSAMLogic.shared and MedicoSAMLogic.shared.is_running():
            return MedicoSAMLogic.shared.url
        MedicoSAMLogic.shared = MedicoServer(executable, models=models, threads=threads)
        url = MedicoSAMLogic.shared.start()
        self.connect_monai_label(url)
        return url

    @staticmethod
    def stop_shared():
        if MedicoSAMLogic.shared:
            MedicoSAMLogic.shared.stop()
            MedicoSAMLogic.shared = None

    @staticmethod
    def connect_monai_label(url):
        """Makes `url` the MONAI Label module's server (its own settings keys) and refreshes it if open."""
        settings = qt.QSettings()
        settings.setValue("MONAILabel/serverUrl", url)
        history = settings.value("MONAILabel/serverUrlHistory") or ""
        entries = [url] + [u for u in history.split(";") if u and u != url]
        settings.setValue("MONAILabel/serverUrlHistory", ";".join(entries[:10]))
        try:
            widget = slicer.modules.monailabel.widgetRepresentation().self()
            widget.updateServerUrlGUIFromSettings()
        except AttributeError:
            logging.info("MONAI Label module not loaded; it will read the server address when opened")


class MedicoSAMWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = MedicoSAMLogic()
        form = qt.QFormLayout()
        box = qt.QGroupBox("medico server")
        box.setLayout(form)
        self.layout.addWidget(box)

        self.executableEdit = qt.QLineEdit(find_executable(self.logic.module_dir) or "")
        self.executableEdit.toolTip = "medico-cli (bundled with the extension; or set MEDICO_CLI)"
        form.addRow("medico-cli:", self.executableEdit)
        self.modelEdit = qt.QLineEdit("medico-lite")
        self.modelEdit.toolTip = "Installed model names or bundle folders, separated by ';'"
        form.addRow("Models:", self.modelEdit)
        self.threadsBox = qt.QSpinBox()
        self.threadsBox.minimum = 1
        self.threadsBox.maximum = 256
        self.threadsBox.value = max(1, os.cpu_count() or 1)
        form.addRow("Threads:", self.threadsBox)

        buttons = qt.QHBoxLayout()
        self.startButton = qt.QPushButton("Start and connect MONAI Label")
        self.stopButton = qt.QPushButton("Stop")
        buttons.addWidget(self.startButton)
        buttons.addWidget(self.stopButton)
        form.addRow(buttons)
        self.statusLabel = qt.QLabel("stopped")
        form.addRow("Status:", self.statusLabel)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        form.addRow("Log:", self.logView)
        self.layout.addStretch(1)

        self.startButton.connect("clicked(bool)", self.onStart)
        self.stopButton.connect("clicked(bool)", self.onStop)
        self.timer = qt.QTimer()
        self.timer.setInterval(1000)
        self.timer.connect("timeout()", self.refreshStatus)
        self.timer.start()

    def onStart(self):
        executable = self.executableEdit.text.strip()
        if not executable or not os.path.isfile(executable):
            slicer.util.errorDisplay("medico-cli not found: set its path (or MEDICO_CLI).")
            return
        models = [m.strip() for m in self.modelEdit.text.split(";") if m.strip()]
        try:
            with slicer.util.tryWithErrorDisplay("medico could not start", waitCursor=True):
                url = self.logic.start(executable, models, self.threadsBox.value)
                self.statusLabel.text = f"serving on {url}"
                slicer.util.selectModule("MONAILabel")
        except RuntimeError:
            self.refreshStatus()

    def onStop(self):
        MedicoSAMLogic.stop_shared()
        self.statusLabel.text = "stopped"

    def refreshStatus(self):
        server = MedicoSAMLogic.shared
        if server is None:
            return
        if not server.is_running():
            self.statusLabel.text = "stopped (see the log)"
        self.logView.setPlainText("\n".join(server.log[-200:]))

    def cleanup(self):
        self.timer.stop()
