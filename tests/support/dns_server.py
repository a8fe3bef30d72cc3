"""A real DNS server for tests: UDP and TCP on 127.0.0.1, an ephemeral port, in a thread.

    with DnsServer({"example.test": {"MX": ["10 mx.example.test"]},
                    "mx.example.test": {"A": ["127.0.0.3"]}}) as server:
        resolver = server.resolver()          # a mailcloak.mail.dns.Resolver aimed at it

Record values are zone-file text (`"10 mx.example.test"`, `"0 ."`, `"127.0.0.3"`), except TXT,
whose value is the plain text (split into 255-byte strings automatically) or a tuple of
strings. Names that were never added answer NXDOMAIN; a known name asked for a type it lacks
answers NOERROR with no records. `servfail` names answer SERVFAIL; `delay` slows every answer.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.reversename
import dns.rrset

from mailcloak.mail.dns import Resolver, parse_server

RecordValue = str | bytes | tuple[str | bytes, ...]
Records = Mapping[str, Mapping[str, Iterable[RecordValue]]]

TTL = 300
UDP_PAYLOAD_WITHOUT_EDNS = 512


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.rstrip(".") + ".")


def _txt_strings(value: RecordValue) -> list[bytes]:
    if isinstance(value, tuple):
        return [part.encode() if isinstance(part, str) else part for part in value]
    data = value.encode() if isinstance(value, str) else value
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


def make_rdata(rdtype: str, value: RecordValue) -> dns.rdata.Rdata:
    kind = dns.rdatatype.from_text(rdtype)
    if kind == dns.rdatatype.TXT:
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, kind, _txt_strings(value))
    assert isinstance(value, str), f"{rdtype} values are zone-file text"
    return dns.rdata.from_text(dns.rdataclass.IN, kind, value, origin=dns.name.root,
                               relativize=False)


class DnsServer:
    def __init__(self, records: Records | None = None, *, host: str = "127.0.0.1",
                 delay: float = 0.0) -> None:
        self.host = host
        self.port = 0
        self.delay = delay
        self.servfail: set[str] = set()
        self.queries: list[tuple[str, str]] = []  # (name, type) in arrival order
        self._zone: dict[tuple[dns.name.Name, int], list[dns.rdata.Rdata]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        for name, by_type in (records or {}).items():
            for rdtype, values in by_type.items():
                self.add(name, rdtype, *values)

    # --- records ------------------------------------------------------------------------------

    def add(self, name: str, rdtype: str, *values: RecordValue) -> None:
        key = (_name(name), dns.rdatatype.from_text(rdtype))
        with self._lock:
            self._zone.setdefault(key, []).extend(make_rdata(rdtype, v) for v in values)

    def add_ptr(self, ip: str, hostname: str) -> None:
        self.add(dns.reversename.from_address(ip).to_text(), "PTR", hostname.rstrip(".") + ".")

    def remove(self, name: str, rdtype: str | None = None) -> None:
        target = _name(name)
        with self._lock:
            for key in [k for k in self._zone if k[0] == target]:
                if rdtype is None or key[1] == dns.rdatatype.from_text(rdtype):
                    del self._zone[key]

    def fail(self, name: str) -> None:
        """Answer SERVFAIL for `name` from now on."""
        self.servfail.add(_name(name).to_text().lower())

    # --- answering ----------------------------------------------------------------------------

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.queries.append((question.name.to_text().rstrip("."),
                             dns.rdatatype.to_text(question.rdtype)))
        name = question.name
        for _ in range(8):  # CNAME chain limit
            if name.to_text().lower() in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            with self._lock:
                found = self._zone.get((name, question.rdtype))
                alias = self._zone.get((name, dns.rdatatype.CNAME))
                known = any(key[0] == name for key in self._zone)
            if found:
                response.answer.append(self._rrset(name, question.rdtype, found))
                return response
            if alias and question.rdtype != dns.rdatatype.CNAME:
                response.answer.append(self._rrset(name, dns.rdatatype.CNAME, alias))
                name = alias[0].target  # type: ignore[attr-defined]
                continue
            if not known:
                response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        response.set_rcode(dns.rcode.SERVFAIL)
        return response

    @staticmethod
    def _rrset(name: dns.name.Name, rdtype: int, items: list[dns.rdata.Rdata]) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype))
        for rdata in items:
            rrset.add(rdata, TTL)
        return rrset

    def _reply_wire(self, wire: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if self.delay:
            time.sleep(self.delay)
        try:
            response = self.answer(query)
        except Exception:  # a broken test record must not kill the server thread
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        limit = max(query.payload, UDP_PAYLOAD_WITHOUT_EDNS) if udp else 65535
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()

    # --- serving ------------------------------------------------------------------------------

    def start(self) -> DnsServer:
        udp, tcp = self._bind()
        self._sockets = [udp, tcp]
        for target, sock in ((self._serve_udp, udp), (self._serve_tcp, tcp)):
            thread = threading.Thread(target=target, args=(sock,), daemon=True,
                                      name=f"test-dns-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        for _ in range(20):  # the UDP port may be taken for TCP; pick another
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, self.port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            udp.settimeout(0.1)
            tcp.settimeout(0.1)
            self.port = port
            return udp, tcp
        raise RuntimeError("no free port for the test DNS server")

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            reply = self._reply_wire(wire, udp=True)
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)

    def _serve_tcp(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve_tcp_connection, args=(conn,),
                             daemon=True).start()

    def _serve_tcp_connection(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError):
            while not self._stopping.is_set():
                header = conn.recv(2, socket.MSG_WAITALL)
                if len(header) < 2:
                    return
                wire = conn.recv(struct.unpack("!H", header)[0], socket.MSG_WAITALL)
                reply = self._reply_wire(wire, udp=False)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """The MAILCLOAK_DNS_SERVERS entry for this server."""
        return f"{self.host}:{self.port}"

    def resolver(self, *, timeout: float = 1.0, lifetime: float = 2.0) -> Resolver:
        return Resolver([parse_server(self.nameserver)], timeout=timeout, lifetime=lifetime)
