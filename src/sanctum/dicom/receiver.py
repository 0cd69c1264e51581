"""The Storage SCP: pynetdicom accepts associations, ``Reception`` turns them into ingest sessions.

What happens at each pynetdicom event:

- ``EVT_REQUESTED`` (before negotiation): the calling AE title must have an active route, else the
  association is rejected with A-ASSOCIATE-RJ (rejected-permanent, service user, "calling AE title
  not recognised") and the refusal is audited. Nothing of the peer's data has been read yet.
- ``EVT_C_STORE``: the instance (as pynetdicom received it, never decoded) goes through the ingest
  pipeline at once; its outcome is the C-STORE status (``reception.STATUS``).
- ``EVT_ACSE_RECV`` of an A-RELEASE request: the session is committed, before pynetdicom sends the
  release response.
- ``EVT_ABORTED`` / ``EVT_CONN_CLOSE`` without a release: the session is cancelled.

Started by ``sanctum dicom listen`` or by the server when ``dicom_port`` is set; see
docs/dicom-receiver.md.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanctum.audit import AuditContext, record
from sanctum.config import ConfigError, Settings, is_loopback
from sanctum.dicom import reception, recovery, routes
from sanctum.dicom.reception import Reception
from sanctum.errors import InvalidInput

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

    from sanctum.api.runtime import Runtime

log = logging.getLogger("sanctum.dicom")
REJECT_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03
STOP_SECONDS = 30.0


@dataclass(frozen=True)
class ListenConfig:
    """Where and how the receiver listens (the ``dicom_*`` settings, or ``sanctum dicom listen``)."""

    host: str
    port: int
    ae_title: str = "SANCTUM"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    allow_plaintext: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ListenConfig:
        values: dict[str, Any] = {
            "host": settings.dicom_host or settings.host,
            "port": settings.dicom_port,
            "ae_title": settings.dicom_ae_title,
            "tls_cert": settings.dicom_tls_cert,
            "tls_key": settings.dicom_tls_key,
            "tls_ca": settings.dicom_tls_ca,
            "allow_plaintext": settings.dicom_allow_plaintext,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["port"] is None:
            raise ConfigError("no DICOM port: set dicom_port or pass --port")
        return cls(**values)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check(self) -> None:
        """Refuse (ConfigError, one line) a configuration that would expose patient data."""
        try:
            routes.ae_title(self.ae_title)
        except InvalidInput as exc:
            raise ConfigError(f"dicom_ae_title: {exc.message}") from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                "TLS for DICOM needs both a certificate and its key (dicom_tls_cert, dicom_tls_key)"
            )
        if self.tls_ca is not None and not self.tls:
            raise ConfigError("dicom_tls_ca (client certificates) needs dicom_tls_cert and dicom_tls_key")
        for path in (self.tls_cert, self.tls_key, self.tls_ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        if not (self.tls or self.allow_plaintext or is_loopback(self.host)):
            raise ConfigError(
                f"refusing to receive DICOM on {self.host} without TLS; set dicom_tls_cert and "
                "dicom_tls_key (and dicom_tls_ca for client certificates), bind to 127.0.0.1, or set "
                "dicom_allow_plaintext for a network segment you trust"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = _HandshakeInAssociation(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        if self.tls_ca is not None:
            context.load_verify_locations(str(self.tls_ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class _HandshakeInAssociation(ssl.SSLContext):
    """pynetdicom wraps each accepted socket in its one accepting thread. With the default
    handshake-on-wrap, a client that connects and stays silent would stop every other sender, so
    the handshake is left to the first read, on the association's own thread."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def listener_name(host: str, port: int) -> str:
    """Which receiver a reception belongs to: this host, the bound address and port."""
    return f"{socket.gethostname()}:{host}:{port}"[:300]


def _transfer_syntaxes() -> list[str]:
    """The uncompressed syntaxes pynetdicom offers by default, plus the usual compressed ones:
    pixel data is copied as it came, never decoded, so any encapsulated syntax is safe to take."""
    from pydicom import uid
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

    return [
        *DEFAULT_TRANSFER_SYNTAXES,
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.RLELossless,
    ]


def _no_delay(event: Event) -> None:
    """Send each response at once: with Nagle's algorithm, a C-STORE response written in two parts
    waits for the sender's delayed ACK (~40 ms per instance)."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer(event: Event) -> str:
    try:
        return str(ipaddress.ip_address(event.assoc.requestor.address))
    except ValueError:
        return "unknown"


class DicomReceiver:
    """One Storage SCP for the whole platform; ``start`` returns once it listens."""

    def __init__(self, runtime: Runtime, config: ListenConfig) -> None:
        config.check()
        self.runtime = runtime
        self.config = config
        self.listener = listener_name(config.host, config.port)
        self._ae: AE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._receptions: dict[int, tuple[Association, Reception]] = {}
        self._stopping = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def _claim_port(self) -> socket.socket:
        """Hold the port while the previous run's leftovers are closed: once it is ours, no live
        receiver with this listener name exists, so what its rows left open is safe to close."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((self.config.host, self.config.port))
        except OSError:
            probe.close()
            raise
        return probe

    def start(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO/DEBUG lines quote UIDs
        probe = self._claim_port()
        try:
            closed = recovery.recover(self.runtime, self.listener)
        finally:
            probe.close()
        if closed[reception.COMMITTED] or closed[reception.CANCELLED]:
            log.warning("DICOM receiver: closed what the last run left: %s", closed)
        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = True
        syntaxes = _transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        handlers = [
            (evt.EVT_CONN_OPEN, _no_delay),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_ACSE_RECV, self._acse_received),
            (evt.EVT_ABORTED, self._ended),
            (evt.EVT_CONN_CLOSE, self._ended),
        ]
        self._server = ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self.config.ssl_context(),
        )
        self._ae = ae
        log.info(
            "DICOM receiver %s listening on %s:%s%s",
            self.config.ae_title,
            self.config.host,
            self.config.port,
            " (TLS)" if self.config.tls else "",
        )

    def stop(self) -> None:
        """Abort open associations (their sessions are cancelled), stop listening, and wait until
        no association thread touches the catalog any more."""
        ae, self._ae = self._ae, None
        if ae is None:
            return
        self._stopping = True
        with self._lock:
            busy = [assoc for assoc, _ in self._receptions.values()]
        ae.shutdown()
        for thread in busy:  # the others never reached the catalog and never will
            thread.join(STOP_SECONDS)
        with self._lock:
            left = [item for _, item in self._receptions.values()]
            self._receptions.clear()
        for item in left:
            item.abort()

    # ------------------------------------------------------------------ handlers

    def _reception(self, event: Event) -> Reception | None:
        with self._lock:
            found = self._receptions.get(id(event.assoc))
        return found[1] if found else None

    def _requested(self, event: Event) -> None:
        """Accept only a calling AE title with an active route; audit a refusal. Fails closed: a
        handler that raised would otherwise let pynetdicom go on and accept the association."""
        peer, calling = _peer(event), ""
        if self._stopping:  # shutting down: come back later (rejected-transient, congestion)
            event.assoc.acse.send_reject(0x02, 0x03, 0x01)
            event.assoc.kill()
            return
        try:
            primitive = event.assoc.requestor.primitive
            calling = str(primitive.calling_ae_title) if primitive is not None else ""
            with self.runtime.db.session(write=False) as session:
                found = routes.for_association(session, calling, peer)
        except Exception as exc:
            log.error("DICOM receiver: route lookup failed (%s)", type(exc).__name__)
            found = routes.Refused("the route could not be looked up")
        if isinstance(found, routes.Accepted):
            with self._lock:
                self._receptions[id(event.assoc)] = (
                    event.assoc,
                    Reception(self.runtime, found, peer=peer, listener=self.listener),
                )
            return
        self._audit_refusal(calling, peer, found)  # first: the trail has it before the sender knows
        event.assoc.acse.send_reject(REJECT_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
        # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ went out and
        # the peer closed (or the ARTIM timer expired); else the socket is shut down before it is sent.
        event.assoc.kill()

    def _audit_refusal(self, calling: str, peer: str, refused: routes.Refused) -> None:
        title = routes.printable(calling)
        log.warning("DICOM receiver: association from %s (AE %r) rejected: %s", peer, title, refused.reason)
        try:
            with self.runtime.db.session() as session:
                record(
                    session,
                    AuditContext(actor_email=reception.RECEIVER, ip=peer),
                    "dicom.association",
                    outcome="denied",
                    project_id=refused.project.id if refused.project else None,
                    project_name=refused.project.name if refused.project else None,
                    target=f"ae:{title}",
                    details={"reason": refused.reason, "listener": self.listener},
                )
        except Exception as exc:
            log.error("DICOM receiver: the refusal could not be audited (%s)", type(exc).__name__)

    def _store(self, event: Event) -> int:
        item = self._reception(event)
        if item is None:  # cannot happen: an association without a route was rejected
            return reception.OUT_OF_RESOURCES
        request = event.request
        raw = event.encoded_dataset()
        return item.store(raw, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID)

    def _acse_received(self, event: Event) -> None:
        from pynetdicom.pdu_primitives import A_RELEASE

        primitive = event.primitive  # type: ignore[attr-defined]
        if isinstance(primitive, A_RELEASE) and primitive.result is None:  # a release request
            item = self._reception(event)
            if item is not None:
                item.release()

    def _ended(self, event: Event) -> None:
        """Aborted, or the connection closed: whatever was not released is cancelled."""
        with self._lock:
            found = self._receptions.pop(id(event.assoc), None)
        if found is not None:
            found[1].abort()


def start_for_server(runtime: Runtime) -> DicomReceiver | None:
    """The receiver the server runs when ``dicom_port`` is set (None: the port is taken).

    With several server workers, each tries; the first to bind the port receives, the others go on
    without a receiver. A bad configuration raises ConfigError: the server refuses to start.
    """
    receiver = DicomReceiver(runtime, ListenConfig.from_settings(runtime.settings))
    try:
        receiver.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.warning(
            "DICOM port %s is in use (another worker of this server?): this process receives no DICOM",
            receiver.config.port,
        )
        return None
    return receiver
