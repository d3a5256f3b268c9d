"""Partner exports (`POST /v1/exports`) and regulator evidence bundles (`POST /admin/v1/evidence-bundles`): one
service, one bundle format (moncore/domain/bundles.py; docs/audit.md "Exports and evidence bundles").

A request writes the record's first version (REQUESTED, with its audit event), starts the exports state machine
(statemachines/exports.asl.json) named after the export id and answers 202; nothing is read or built inside the
request, whatever the scope. The state machine runs the seal job for the tenant (so what was recorded before the
request is sealed), then `build`, then records the outcome:

    build   RUNNING (with progress versions) -> the ZIP on local disk -> the Object Lock bucket -> READY
    fail    (the Catch path) FAILED with the error

`build` streams: legs and audit events are read page by page and spooled to disk as they come (moncore/audit/
bundle.py), so memory never grows with the scope. A sealed item of the scope that is in no block yet (the seal job
was skipped because a scheduled run held its lease, or an item committed late) raises SealPending: the state machine
retries the build after the running seal finishes. Every version of the record is a new item (append-only table).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from cryptography.hazmat.primitives import serialization

from moncore.audit.bundle import BundleWriter, KindFiles
from moncore.config import settings
from moncore.domain.audit import audit_event
from moncore.domain.bundles import (
    AUDIT_EVENTS,
    COMPLIANCE_TIMELINE,
    EXPOSURE,
    KINDS,
    LEDGER,
    ExposureTally,
    build_manifest,
    in_scope,
    is_compliance_action,
    manifest_bytes,
)
from moncore.domain.clock import now_rfc3339, parse_instant
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import ConcurrencyConflict, InvalidStateTransition, NotFound, ValidationFailed
from moncore.domain.ids import new_id
from moncore.domain.seals import AUDIT, LEG
from moncore.store import evidence, signing
from moncore.store import exports as store
from moncore.store import seals as seals_store
from moncore.store import tenancy as tenancy_store

PARTNER = "partner"
ADMIN = "admin"
REQUESTED, RUNNING, READY, FAILED = "REQUESTED", "RUNNING", "READY", "FAILED"
DOWNLOAD_URL_S = 900  # a download URL is asked for when needed (GET), so it may be short-lived
PROGRESS_INTERVAL_S = 5.0  # at most one progress version per interval within a step (and one per step)
ACTOR = "system:exports"
_ACTIONS = {PARTNER: "export", ADMIN: "evidence_bundle"}  # audit action prefixes: export.requested, ...


class SealPending(Exception):
    """Sealed items of the scope are not in a block yet; the state machine retries the build (errorType)."""


class ExportService:
    # ---------------------------------------------------------------- requests (API)
    def request(
        self,
        caller: Caller,
        req: RequestIdentity,
        *,
        origin: str,
        tenant_id: str,
        kinds: Iterable[str],
        scope_from: str,
        scope_to: str,
    ) -> Result:
        """Record the export (REQUESTED, audited) and start its state machine; 202 {id, status, ...}."""
        wanted = list(dict.fromkeys(kinds))
        if not wanted or any(kind not in KINDS for kind in wanted):
            raise ValidationFailed(
                f"kinds must be among {', '.join(KINDS)}", errors=[{"loc": ["body", "kinds"], "msg": str(wanted)}]
            )
        start, end = _scope(scope_from, scope_to)
        if tenancy_store.find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        at = now_rfc3339()
        export_id = new_id("exp")
        document: dict[str, Any] = {
            "id": export_id,
            "tenant_id": tenant_id,
            "origin": origin,
            "kinds": wanted,
            "from": start,
            "to": end,
            "requested_by": {"actor": caller.actor, "role": caller.role, "correlation_id": caller.correlation_id},
            "requested_at": at,
            "status": REQUESTED,
            "progress": None,
            "updated_at": at,
        }
        audit = audit_event(
            tenant_id=tenant_id,
            action=f"{_ACTIONS[origin]}.requested",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=export_id,
            payload={"id": export_id, "kinds": wanted, "from": start, "to": end, "request_hash": req.request_hash},
        )
        store.append(store.version_item(document, 1, at), audit)
        try:
            _states().start_execution(
                stateMachineArn=settings().exports_state_machine_arn,
                name=export_id,
                input=json.dumps({"export_id": export_id, "tenant_id": tenant_id}),
            )
        except Exception as failed:
            self.fail(export_id, {"Error": type(failed).__name__, "Cause": str(failed)})
            raise
        return Result({"id": export_id, "status": REQUESTED, "kinds": wanted, "from": start, "to": end})

    def get(self, export_id: str, *, origin: str | None, tenant_id: str | None = None) -> dict[str, Any]:
        """The record as its latest version says, with a fresh download URL once READY. Another tenant's export, or
        a bundle asked for on the other plane, is NotFound (tenant isolation; partners never see regulator bundles).
        origin None: either plane (the operator's `moncore exports show`)."""
        item = store.latest(export_id)
        if item is None or origin not in (None, item.origin) or tenant_id not in (None, item.tenant_id):
            raise NotFound(f"export {export_id} not found")
        return view(dict(item.document))

    # ---------------------------------------------------------------- state machine tasks
    def build(self, export_id: str) -> dict[str, Any]:
        """Build the bundle, upload it, record READY. A retried build after READY answers the record."""
        item = store.latest(export_id)
        if item is None:
            raise NotFound(f"export {export_id} not found")
        document, version = dict(item.document), int(item.version)
        if document["status"] == READY:
            return {"id": export_id, "status": READY}
        if document["status"] == FAILED:
            raise InvalidStateTransition(f"export {export_id} failed; request a new one")
        run = _Run(document, version)
        with tempfile.TemporaryDirectory(prefix="moncore-export-") as workdir:
            ready = run.execute(Path(workdir))
        run.record(ready, audit_action="completed")
        return {"id": export_id, "status": READY, "sha256": ready["sha256"]}

    def fail(self, export_id: str, error: dict[str, Any]) -> dict[str, Any]:
        """Record FAILED with the error (the state machine's Catch path); an export already READY stays READY."""
        for _ in range(5):
            item = store.latest(export_id)
            if item is None:
                raise NotFound(f"export {export_id} not found")
            document = dict(item.document)
            if document["status"] in (READY, FAILED):
                return {"id": export_id, "status": document["status"]}
            cause = str(error.get("Cause") or "")[:2000]
            failed = {**document, "status": FAILED, "error": {"error": str(error.get("Error") or ""), "cause": cause}}
            try:
                _Run(document, int(item.version)).record(failed, audit_action="failed")
            except store.VersionTaken:
                continue
            return {"id": export_id, "status": FAILED}
        raise ConcurrencyConflict(f"export {export_id} is being changed concurrently; retry")


def view(document: dict[str, Any]) -> dict[str, Any]:
    """What GET answers: the record, plus a presigned download URL (and its expiry) once READY."""
    body = {
        key: document.get(key)
        for key in ("id", "tenant_id", "kinds", "from", "to", "status", "progress", "requested_at", "updated_at")
    }
    body |= {"manifest": document.get("manifest"), "download_url": None, "download_expires_at": None}
    if document["status"] == READY:
        body["download_url"] = evidence.download_url(document["object_key"], DOWNLOAD_URL_S)
        expires = datetime.now(UTC) + timedelta(seconds=DOWNLOAD_URL_S)
        body["download_expires_at"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        body |= {"sha256": document["sha256"], "bytes": document["bytes"], "retain_until": document["retain_until"]}
    if document["status"] == FAILED:
        body["error"] = document.get("error")
    return body


def _scope(scope_from: str, scope_to: str) -> tuple[str, str]:
    """[from, to) in the stored instant format; from before to, and to not after now (a bundle covers recorded
    history: a later `to` would let rows arrive after the bundle was built)."""
    start, end = parse_instant(scope_from, field="from"), parse_instant(scope_to, field="to")
    if start >= end:
        raise ValidationFailed("from must be before to", errors=[{"loc": ["body", "from"], "msg": "after to"}])
    if end > now_rfc3339():
        raise ValidationFailed(
            "to must not be in the future: a bundle covers history already recorded",
            errors=[{"loc": ["body", "to"], "msg": "in the future"}],
        )
    return start, end


@cache
def _states() -> Any:
    return boto3.client("stepfunctions", region_name=settings().region)


class _Run:
    """One build of one export: its record's next versions, its progress, its passes over the scope."""

    def __init__(self, document: dict[str, Any], version: int) -> None:
        self.document = document
        self.version = version
        self.tenant_id = str(document["tenant_id"])
        self.kinds = list(document["kinds"])
        self.scope = (str(document["from"]), str(document["to"]))
        self.steps = [step for step, needed in self._plan() if needed]
        self.steps_done = 0
        self.rows = 0
        self._last_progress_s = 0.0

    def _plan(self) -> list[tuple[str, bool]]:
        return [
            ("legs", LEDGER in self.kinds or EXPOSURE in self.kinds),
            ("audit_events", AUDIT_EVENTS in self.kinds or COMPLIANCE_TIMELINE in self.kinds),
            ("blocks", True),
            ("upload", True),
        ]

    # -------------------------------------------------------------- record versions
    def record(self, document: dict[str, Any], *, audit_action: str | None = None) -> None:
        at = now_rfc3339()
        document = {**document, "updated_at": at}
        audit = None
        if audit_action is not None:
            origin = str(document["origin"])
            audit = audit_event(
                tenant_id=self.tenant_id,
                action=f"{_ACTIONS[origin]}.{audit_action}",
                actor=ACTOR,
                correlation_id=f"export-{document['id']}",
                subject_id=str(document["id"]),
                payload={
                    key: document.get(key)
                    for key in ("id", "status", "sha256", "object_key", "error")
                    if key in document
                },
            )
        store.append(store.version_item(document, self.version + 1, at), audit)
        self.version += 1
        self.document = document

    def progress(self, step: str, *, force: bool = False) -> None:
        now_s = time.monotonic()
        if not force and now_s - self._last_progress_s < PROGRESS_INTERVAL_S:
            return
        self._last_progress_s = now_s
        progress = {"step": step, "steps_done": self.steps_done, "steps_total": len(self.steps), "rows": self.rows}
        self.record({**self.document, "status": RUNNING, "progress": progress})

    def _step(self, step: str) -> None:
        self.progress(step, force=True)

    def _done(self) -> None:
        self.steps_done += 1

    # -------------------------------------------------------------- the build
    def execute(self, workdir: Path) -> dict[str, Any]:
        writer = BundleWriter(workdir)
        files = {kind: writer.kind(kind) for kind in self.kinds}
        seen = {LEG: 0, AUDIT: 0}
        if "legs" in self.steps:
            self._step("legs")
            seen[LEG] = self._legs(files.get(LEDGER), files.get(EXPOSURE))
            self._done()
        if "audit_events" in self.steps:
            self._step("audit_events")
            seen[AUDIT] = self._audit(files.get(AUDIT_EVENTS), files.get(COMPLIANCE_TIMELINE))
            self._done()
        self._step("blocks")
        sealed = {LEG: 0, AUDIT: 0}
        for block in seals_store.blocks_covering(self.tenant_id, *self.scope):
            writer.blocks.add(block)
            for leaf in block.leaves:
                if in_scope(leaf.ref.cursor, *self.scope):
                    sealed[leaf.ref.kind] += 1
        self._done()
        for kind, count in seen.items():
            if count > sealed[kind]:
                raise SealPending(f"{count - sealed[kind]} {kind} items of the scope are not sealed yet")
        self._step("upload")
        return self._upload(writer, workdir)

    def _legs(self, ledger: KindFiles | None, exposure: KindFiles | None) -> int:
        """One pass over the scope's legs feeds ledger.jsonl/.csv and the exposure tally (written at the end)."""
        tally = ExposureTally() if exposure is not None else None
        count = 0
        for leg in seals_store.scope_legs(self.tenant_id, *self.scope):
            count += 1
            if ledger is not None:
                ledger.add(leg)
            if tally is not None:
                tally.add(leg)
            self.rows += 1
            self.progress("legs")
        if exposure is not None and tally is not None:
            for row in tally.rows():
                exposure.add(row)
        return count

    def _audit(self, audit: KindFiles | None, timeline: KindFiles | None) -> int:
        count = 0
        for event in seals_store.scope_audit_events(self.tenant_id, *self.scope):
            count += 1
            if audit is not None:
                audit.add(event)
            if timeline is not None and is_compliance_action(str(event.get("action", ""))):
                timeline.add(event)
            self.rows += 1
            self.progress("audit_events")
        return count

    def _upload(self, writer: BundleWriter, workdir: Path) -> dict[str, Any]:
        key_id, der = signing.signing_public_key()
        pem = serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        created_at = now_rfc3339()
        document = self.document

        def manifest_of(entries: list[dict[str, Any]], blocks: dict[str, Any]) -> bytes:
            return manifest_bytes(
                build_manifest(
                    bundle_id=str(document["id"]),
                    origin=str(document["origin"]),
                    tenant_id=self.tenant_id,
                    scope_from=self.scope[0],
                    scope_to=self.scope[1],
                    kinds=self.kinds,
                    requested_by=document["requested_by"],
                    requested_at=str(document["requested_at"]),
                    created_at=created_at,
                    files=entries,
                    blocks=blocks,
                    key_id=key_id,
                    algorithm=signing.ALGORITHM,
                )
            )

        def sign(data: bytes) -> bytes:
            signature = signing.sign(data)
            if signature.key_id != key_id:
                raise RuntimeError(f"the manifest names key {key_id} but KMS signed with {signature.key_id}")
            return base64.b64decode(signature.signature_b64)

        path = workdir / "bundle.zip"
        manifest = writer.finish(path, manifest_of, sign, pem)
        sha256 = _file_sha256(path)
        retain_until = datetime.now(UTC) + timedelta(days=settings().evidence_retention_days)
        key = f"exports/{self.tenant_id}/{document['id']}/{sha256}.zip"
        version_id = evidence.put_file_once(
            key,
            path,
            sha256_hex=sha256,
            retain_until=retain_until,
            content_type="application/zip",
            filename=f"{document['id']}.zip",
        )
        self.steps_done = len(self.steps)
        progress = {"step": "done", "steps_done": self.steps_done, "steps_total": len(self.steps), "rows": self.rows}
        return {
            **document,
            "status": READY,
            "progress": progress,
            "manifest": json.loads(manifest),
            "object_key": key,
            "object_version_id": version_id,
            "sha256": sha256,
            "bytes": path.stat().st_size,
            "retain_until": retain_until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "completed_at": now_rfc3339(),
        }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
