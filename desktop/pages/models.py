"""Models page: which device/dtype the engine uses and why, what is loaded, where models come from.

Everything is asked of the engine worker (torch lives there): ``info`` for the facts, ``load``
to load the configured models, ``prepare_models`` to build the embedded default (SmolLM2-135M-
Instruct + all-MiniLM-L6-v2, docs/architecture.md "Models, offline first") with a progress bar per stage.
The 4-bit toggle (bitsandbytes NF4) is enabled only when the worker reports CUDA.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QTextBrowser, QVBoxLayout, QWidget)

from desktop.pages.chat import ENGINE_MISSING

PATH_FIELDS = (("lm", "Backbone (generator)", "dir", "Hugging Face id or model directory; empty = embedded SmolLM2"),
               ("encoder", "Encoder (retriever)", "dir", "BERT-family id or directory; empty = embedded MiniLM"),
               ("generator_adapter", "Generator adapter", "dir", "LoRA adapter on the generator, e.g. a published/trained EMMA dialogue adapter; empty = the shipped EMMA adapter (embedded SmolLM2 only)"),
               ("retriever", "EMMA retriever", "file", "published retriever checkpoint, .safetensors (optional)"))
#: generation on an OpenAI-compatible server (engine/backbones/server.py) instead of in the engine process
SERVER_FIELDS = (("generator_url", "Generator server", "OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1 (vLLM, llama.cpp); "
                  "empty = generate in the engine process"),
                 ("served_model", "Served model", "its base model's name on the server; empty = the first it lists"),
                 ("served_adapter", "Served adapter", "LoRA the server applies per request, by its served name "
                  "(vLLM --lora-modules NAME=DIR); empty = none"))


class ModelsPage(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.info: dict = {}
        self.bars: dict[str, QProgressBar] = {}
        self._build()
        ctx.engine_info_changed.connect(self.show_info)
        if ctx.engine_info:
            self.show_info(ctx.engine_info)

    def _build(self):
        root = QVBoxLayout(self)
        if not self.ctx.engine_available:
            note = QLabel(ENGINE_MISSING)
            note.setWordWrap(True)
            root.addWidget(note)

        paths = QGroupBox("Models")
        form = QFormLayout(paths)
        cfg = self.ctx.model_config()
        self.fields: dict[str, QLineEdit] = {}
        for key, label, kind, tip in PATH_FIELDS:
            edit = QLineEdit(cfg.get(key, ""))
            edit.setPlaceholderText(tip)
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _=False, k=key, t=kind: self._browse(k, t))
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            form.addRow(label, row)
            self.fields[key] = edit
        for key, label, tip in SERVER_FIELDS:
            edit = QLineEdit(cfg.get(key, ""))
            edit.setPlaceholderText(tip)
            edit.setToolTip(tip)
            form.addRow(label, edit)
            self.fields[key] = edit
        self.four_bit = QCheckBox("Load the generator in 4-bit (bitsandbytes NF4, CUDA only)")
        self.four_bit.setChecked(bool(cfg.get("load_in_4bit")))
        self.four_bit.setEnabled(False)
        self.four_bit.setToolTip("Enabled when the engine reports a CUDA GPU")
        form.addRow("", self.four_bit)
        buttons = QHBoxLayout()
        self.apply_button = QPushButton("Apply and load")
        self.apply_button.clicked.connect(self.apply_and_load)
        self.refresh_button = QPushButton("Check engine")
        self.refresh_button.clicked.connect(self.refresh)
        self.prepare_button = QPushButton("Prepare default models")
        self.prepare_button.setToolTip("memlab models prepare: build SmolLM2-135M-Instruct as a safetensors "
                                       "directory and check all-MiniLM-L6-v2 (offline, from the installed packages)")
        self.prepare_button.clicked.connect(self.prepare)
        for b in (self.apply_button, self.refresh_button, self.prepare_button):
            b.setEnabled(self.ctx.engine_available)
            buttons.addWidget(b)
        buttons.addStretch(1)
        form.addRow(buttons)
        root.addWidget(paths)
        root.addWidget(self._build_remote())

        self.progress_box = QGroupBox("Progress")
        self.progress_layout = QFormLayout(self.progress_box)
        self.progress_box.hide()
        root.addWidget(self.progress_box)

        status = QGroupBox("Engine")
        sbox = QVBoxLayout(status)
        self.summary = QLabel("The engine worker has not started yet — press “Check engine”.")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        sbox.addWidget(self.summary)
        self.details = QTextBrowser()
        sbox.addWidget(self.details, 1)
        root.addWidget(status, 1)

    def _build_remote(self) -> QGroupBox:
        """Where the engine runs: this machine, or ``memlab engine serve`` elsewhere (desktop.remote_engine)."""
        box = QGroupBox("Engine location")
        form = QFormLayout(box)
        self.where_label = QLabel("This machine (a worker process started by the app).")
        self.where_label.setTextFormat(Qt.TextFormat.RichText)
        self.where_label.setWordWrap(True)
        form.addRow("Runs on", self.where_label)
        self.remote_url = QLineEdit(self.ctx.settings.value("engine/remote_url", "") or "")
        self.remote_url.setPlaceholderText("memlab://127.0.0.1:8765 — from `memlab engine serve` (SSH tunnel for another machine)")
        self.remote_token = QLineEdit()
        self.remote_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.remote_token.setPlaceholderText("the token the server printed")
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(lambda: self.connect_remote())
        self.local_button = QPushButton("Use this machine")
        self.local_button.clicked.connect(self.use_local)
        row = QHBoxLayout()
        row.addWidget(self.remote_url, 2)
        row.addWidget(self.remote_token, 1)
        row.addWidget(self.connect_button)
        row.addWidget(self.local_button)
        form.addRow("Remote engine", row)
        for w in (self.connect_button, self.local_button):
            w.setEnabled(self.ctx.engine_available)
        return box

    def connect_remote(self, url: str | None = None, token: str | None = None) -> bool:
        url = (url if url is not None else self.remote_url.text()).strip()
        token = token if token is not None else self.remote_token.text()
        if not url or not token.strip():
            self._error("Give the engine's URL and its token (both printed by `memlab engine serve`).")
            return False
        self.remote_url.setText(url)
        self.ctx.settings.setValue("engine/remote_url", url)  # the URL is remembered, the token is not
        self.where_label.setText(f"connecting to {html.escape(url)}…")
        if not self.ctx.engine.connect_remote(url, token):
            self.where_label.setText("This machine — the remote engine could not be reached.")
            self._error(self.ctx.engine.last_error)
            return False
        self.refresh()
        return True

    def use_local(self):
        self.ctx.engine.use_local()
        self.refresh()

    def _where_text(self, info: dict) -> str:
        engine = self.ctx.engine if self.ctx.has_engine_client() else None
        host = html.escape(str(info.get("host", "")))
        if engine is None or engine.remote is None:
            return f"This machine ({host}), worker pid {info.get('pid')}."
        return (f"<b>Remote engine {html.escape(engine.where())}</b> — host {host}, worker pid {info.get('pid')}"
                f" (this connection's own worker: its own agents and chats)")

    def on_shown(self):
        if self.ctx.engine_available and not self.info:
            self.refresh()

    # -- actions -------------------------------------------------------------------------------------
    def _browse(self, key, kind):
        if kind == "dir":
            path = QFileDialog.getExistingDirectory(self, "Choose a model directory")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", "", "safetensors (*.safetensors)")
        if path:
            self.fields[key].setText(path)

    def config(self) -> dict:
        cfg = {k: e.text().strip() for k, e in self.fields.items()}
        cfg["load_in_4bit"] = self.four_bit.isChecked() and self.four_bit.isEnabled()
        return cfg

    def refresh(self):
        self.ctx.engine.request("info", on_error=self._error)

    def apply_and_load(self):
        self.ctx.set_model_config(self.config())
        self._progress("load", "loading models", 0, 0)
        self.ctx.engine.request("load", on_done=lambda r: self._done("load"), on_error=self._error,
                                on_progress=lambda label, d, t: self._progress("load", label, d, t))

    def prepare(self):
        self._progress("prepare", "preparing the embedded default", 0, 0)
        self.prepare_button.setEnabled(False)

        def done(result):
            self.prepare_button.setEnabled(True)
            self._done("prepare")
            self.ctx.status("embedded default models are ready")

        def failed(message):
            self.prepare_button.setEnabled(True)
            self._error(message)

        self.ctx.engine.request("prepare_models", on_done=done, on_error=failed,
                                on_progress=lambda label, d, t: self._progress(label, label, d, t))

    def _progress(self, key, label, done, total):
        self.progress_box.show()
        stage = str(key).split(":")[0][:60]
        bar = self.bars.get(stage)
        if bar is None:
            bar = QProgressBar()
            self.bars[stage] = bar
            self.progress_layout.addRow(html.escape(stage), bar)
        if total and total > 0:
            bar.setRange(0, 1000)
            bar.setValue(int(1000 * min(done / total, 1.0)))
            bar.setFormat(f"{label[:50]} — %p%")
        else:
            bar.setRange(0, 0)

    def _done(self, key):
        for bar in self.bars.values():
            if bar.maximum() == 0:
                bar.setRange(0, 1)
                bar.setValue(1)

    def _error(self, message):
        self.summary.setText(f"<span style='color:#b00020'>{html.escape(message)}</span>")

    # -- display -------------------------------------------------------------------------------------
    def show_info(self, info: dict):
        self.info = dict(info)
        cuda = bool(info.get("cuda"))
        self.four_bit.setEnabled(cuda and bool(info.get("bitsandbytes")))
        if not cuda:
            self.four_bit.setChecked(False)
        lm, enc = info.get("lm") or {}, info.get("encoder") or {}
        plan = lm.get("plan") or {}
        if lm.get("server"):
            head = f"Generator runs on <b>{html.escape(lm['server'].get('where', '?'))}</b>."
        elif plan:
            q = ", 4-bit NF4" if plan.get("load_in_4bit") else ""
            head = f"Generator runs on <b>{html.escape(plan.get('device', '?'))} {html.escape(plan.get('dtype', '?'))}{q}</b>."
        else:
            head = "No model loaded yet (they load with the first chat or with “Apply and load”)."
        gpu = f"CUDA: {html.escape(info.get('gpu', ''))}" if cuda else "no CUDA GPU: CPU float32, 4-bit off"
        self.where_label.setText(self._where_text(info))
        self.summary.setText(f"{head} torch {html.escape(str(info.get('torch')))} · {gpu} · "
                             f"worker pid {info.get('pid')}")
        out = []
        for title, m in (("Generator", lm), ("Encoder", enc)):
            if m:
                p = m.get("plan") or {}
                kind = f" ({html.escape(str(m['kind']))})" if m.get("kind") else ""
                where = (html.escape(m["server"].get("where", "")) if m.get("server")
                         else f"{html.escape(str(p.get('device')))} {html.escape(str(p.get('dtype')))}")
                out.append(f"<p><b>{title}</b>: {html.escape(str(m.get('name')))}{kind} on {where}</p><ul>")
                out += [f"<li>{html.escape(r)}</li>" for r in p.get("reasons", [])]
                out.append("</ul>")
        d = info.get("defaults") or {}
        if d:
            out.append("<p><b>Embedded default</b></p><ul>")
            if "error" in d:
                out.append(f"<li>{html.escape(d['error'])}</li>")
            lmd = d.get("lm") or {}
            if lmd:
                state = "prepared" if lmd.get("prepared") else "not prepared — press “Prepare default models”"
                out.append(f"<li>SmolLM2-135M-Instruct: {html.escape(str(lmd.get('path')))} — {state}"
                           f"{'' if lmd.get('prepared') else ' (' + html.escape(str(lmd.get('detail', ''))) + ')'}</li>")
            encd = d.get("encoder") or {}
            if encd:
                out.append(f"<li>all-MiniLM-L6-v2: {html.escape(str(encd.get('path', encd.get('detail', ''))))}</li>")
            out.append("</ul>")
        cfg = info.get("config") or {}
        if cfg.get("generator_adapter") or cfg.get("retriever"):
            out.append("<p><b>Checkpoints</b></p><ul>")
            if cfg.get("generator_adapter"):
                out.append(f"<li>generator adapter: {html.escape(cfg['generator_adapter'])}</li>")
            if cfg.get("retriever"):
                out.append(f"<li>retriever: {html.escape(cfg['retriever'])}</li>")
            out.append("</ul>")
        if info.get("agents"):
            out.append(f"<p><b>Agents in the worker</b>: {html.escape(', '.join(info['agents']))}</p>")
        self.details.setHtml("".join(out))
