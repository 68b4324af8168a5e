"""Minimal wire-level XMPP client for testing mod_component_xep0225 (stdlib only).

Speaks just enough RFC 6120 for the tests: stream open/restart, STARTTLS,
SASL PLAIN / SCRAM-SHA-1 / SCRAM-SHA-256 (client side implemented here),
resource binding for c2s, and reading whole top-level elements.
"""

import base64
import hashlib
import hmac
import os
import select
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XMPP_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_COMPONENT = "urn:xmpp:component:0"
NS_CLIENT = "jabber:client"
NS_SM = "urn:xmpp:sm:3"
STANZA_TAGS = ("{jabber:client}message", "{jabber:client}presence", "{jabber:client}iq")


def q(ns, name):
    return "{%s}%s" % (ns, name)


class StreamClosed(Exception):
    """The peer closed the stream (</stream:stream>) or the socket."""

    def __init__(self, msg, stream_error=None):
        super().__init__(msg)
        self.stream_error = stream_error


class StreamError(Exception):
    def __init__(self, condition, text=None, element=None):
        super().__init__("stream error: %s%s" % (condition, " (%s)" % text if text else ""))
        self.condition = condition
        self.text = text
        self.element = element


def stream_error_condition(el):
    cond, text = None, None
    for child in el:
        if child.tag == q(NS_XMPP_STREAMS, "text"):
            text = child.text
        elif child.tag.startswith("{%s}" % NS_XMPP_STREAMS):
            cond = child.tag.split("}", 1)[1]
    return cond, text


def stanza_error_condition(el):
    err = el.find(q(NS_CLIENT, "error"))
    if err is None:
        return None, None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return err.get("type"), child.tag.split("}", 1)[1]
    return err.get("type"), None


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=5.0, name="conn", rcvbuf=None):
        self.name = name
        self.timeout = timeout
        if rcvbuf:
            # A small receive buffer set before connect() (so the window stays small):
            # lets a test fill the server's send queue quickly by not reading.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = None
        self.depth = 0
        self.queue = []
        self.stream_attrs = None
        self.closed = False
        self.raw_log = []
        self.tls_version = None
        self.sm = False      # XEP-0198 acknowledgements enabled (enable_sm)
        self.sm_in = 0       # stanzas received since <enable/>
        self.sm_acked = 0    # the peer's last <a h=.../>

    # -- low level --------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _new_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.stream_attrs = None

    def _pump(self, deadline):
        """Read once from the socket and parse; raises StreamClosed at EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("%s: timed out waiting for data" % self.name)
        pending = hasattr(self.sock, "pending") and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                raise TimeoutError("%s: timed out waiting for data" % self.name)
        try:
            data = self.sock.recv(65536)
        except Exception as e:  # OSError, ssl.SSLError, or pyOpenSSL's errors
            self.closed = True
            raise StreamClosed("%s: connection error: %s" % (self.name, e))
        if not data:
            self.closed = True
            raise StreamClosed("%s: connection closed by peer" % self.name)
        self.raw_log.append(data)
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.stream_attrs = dict(el.attrib)
                    self.queue.append(("open", el))
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.queue.append(("element", el))
                elif self.depth == 0:
                    self.queue.append(("close", el))

    def next_event(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.queue:
            self._pump(deadline)
        return self.queue.pop(0)

    def read(self, timeout=None, raise_stream_error=True):
        """Next top-level element. A stream error raises StreamError."""
        while True:
            kind, el = self.next_event(timeout)
            if kind == "open":
                continue
            if kind == "close":
                self.closed = True
                self.saw_close_tag = True
                raise StreamClosed("%s: stream closed" % self.name)
            if el.tag == q(NS_STREAMS, "error") and raise_stream_error:
                cond, text = stream_error_condition(el)
                raise StreamError(cond, text, el)
            if self.handle_sm(el):
                continue
            return el

    # -- XEP-0198 acknowledgements (no resumption) ---------------------------------
    def enable_sm(self):
        self.send("<enable xmlns='%s'/>" % NS_SM)
        el = self.read()
        if el.tag != q(NS_SM, "enabled"):
            raise AssertionError("expected <enabled/>, got %s" % el.tag)
        self.sm, self.sm_in = True, 0
        return el

    def handle_sm(self, el):
        """With stream management on: counts stanzas, answers <r/> with what was read so
        far and swallows <a/>. True when the element was consumed."""
        if not self.sm:
            return False
        if el.tag == q(NS_SM, "r"):
            self.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.sm_in))
            return True
        if el.tag == q(NS_SM, "a"):
            self.sm_acked = int(el.get("h"))
            return True
        if el.tag in STANZA_TAGS:
            self.sm_in += 1
        return False

    def expect_stream_error(self, timeout=None):
        """Read until a stream error; returns (condition, text, saw_close)."""
        try:
            while True:
                self.read(timeout)
        except StreamError as e:
            saw_close = False
            try:
                kind, _ = self.next_event(timeout or 2)
                saw_close = kind == "close"
            except (StreamClosed, TimeoutError):
                pass
            return e.condition, e.text, saw_close
        except StreamClosed:
            return None, None, getattr(self, "saw_close_tag", False)

    # -- stream ---------------------------------------------------------------
    def open_stream(self, to, frm=None, ns=NS_CLIENT, version="1.0"):
        self._new_parser()
        attrs = "to=%s" % quoteattr(to)
        if frm:
            attrs += " from=%s" % quoteattr(frm)
        if version:
            attrs += " version=%s" % quoteattr(version)
        self.send("<?xml version='1.0'?><stream:stream xmlns=%s xmlns:stream='%s' %s xml:lang='en'>"
                  % (quoteattr(ns), NS_STREAMS, attrs))
        kind, el = self.next_event()
        if kind != "open":
            raise AssertionError("expected stream header, got %r" % (el.tag,))
        return el

    def read_features(self):
        el = self.read()
        if el.tag != q(NS_STREAMS, "features"):
            raise AssertionError("expected features, got %s" % el.tag)
        return el

    def starttls(self, server_hostname, cafile):
        """STARTTLS; cafile=None: no verification (the peer certificate is kept in peer_cert_der)."""
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        el = self.read()
        if el.tag != q(NS_TLS, "proceed"):
            raise AssertionError("expected <proceed/>, got %s" % el.tag)
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls_version = self.sock.version()
        self.peer_cert_der = self.sock.getpeercert(binary_form=True)
        self.parser = None

    def starttls_exporter(self, server_hostname, cafile):
        """STARTTLS through pyOpenSSL (if installed), which can export keying material for
        the 'tls-exporter' channel binding (RFC 9266); Python's ssl module cannot.
        Returns False when pyOpenSSL is not available."""
        try:
            from OpenSSL import SSL
        except ImportError:
            return False
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        el = self.read()
        if el.tag != q(NS_TLS, "proceed"):
            raise AssertionError("expected <proceed/>, got %s" % el.tag)
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(cafile)
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
        raw = self.sock
        raw.settimeout(None)
        conn = SSL.Connection(ctx, raw)
        conn.set_tlsext_host_name(server_hostname.encode())
        conn.set_connect_state()
        conn.do_handshake()
        self.sock = conn
        self.tls_version = conn.get_protocol_version_name()
        self.parser = None
        return True

    def tls_exporter(self):
        return self.sock.export_keying_material(b"EXPORTER-Channel-Binding", 32, None)

    def close_stream(self):
        try:
            self.send("</stream:stream>")
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- SASL -----------------------------------------------------------------
    def sasl_plain(self, authcid, password, authzid=""):
        msg = ("%s\0%s\0%s" % (authzid, authcid, password)).encode("utf-8")
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
                  % (NS_SASL, base64.b64encode(msg).decode()))
        return self._sasl_result()

    def _sasl_result(self):
        el = self.read()
        if el.tag == q(NS_SASL, "success"):
            return ("success", el)
        if el.tag == q(NS_SASL, "failure"):
            conds = [c.tag.split("}", 1)[1] for c in el if not c.tag.endswith("}text")]
            return ("failure", conds[0] if conds else None)
        return ("unexpected", el)

    def read_raw_until_closed(self, timeout=5.0):
        """Read raw bytes (no XML parsing) until the peer closes or the time is up."""
        deadline = time.monotonic() + timeout
        chunks = []
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def sasl_scram(self, authcid, password, hash_name="SHA-256", gs2_flag="n", authzid=None, cb_data=None):
        """SCRAM; gs2_flag 'p=tls-exporter' with cb_data (bytes) makes it SCRAM-*-PLUS."""
        hname = {"SHA-1": "sha1", "SHA-256": "sha256"}[hash_name]
        mech = "SCRAM-" + hash_name + ("-PLUS" if gs2_flag.startswith("p") else "")
        cnonce = base64.b64encode(os.urandom(18)).decode()
        user = authcid.replace("=", "=3D").replace(",", "=2C")
        gs2 = "%s,%s," % (gs2_flag, ("a=" + authzid.replace("=", "=3D").replace(",", "=2C")) if authzid else "")
        first_bare = "n=%s,r=%s" % (user, cnonce)
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                  % (NS_SASL, mech, base64.b64encode((gs2 + first_bare).encode()).decode()))
        el = self.read()
        if el.tag == q(NS_SASL, "failure"):
            conds = [c.tag.split("}", 1)[1] for c in el if not c.tag.endswith("}text")]
            return ("failure", conds[0] if conds else None)
        if el.tag != q(NS_SASL, "challenge"):
            return ("unexpected", el)
        server_first = base64.b64decode(el.text or "").decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(cnonce):
            raise AssertionError("server nonce does not extend client nonce")
        salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", hname).digest()
        stored_key = hashlib.new(hname, client_key).digest()
        final_wo_proof = "c=%s,r=%s" % (base64.b64encode(gs2.encode() + (cb_data or b"")).decode(), nonce)
        auth_msg = ",".join([first_bare, server_first, final_wo_proof]).encode()
        sig = hmac.new(stored_key, auth_msg, hname).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", hname).digest()
        server_sig = hmac.new(server_key, auth_msg, hname).digest()
        final = "%s,p=%s" % (final_wo_proof, base64.b64encode(proof).decode())
        self.send("<response xmlns='%s'>%s</response>" % (NS_SASL, base64.b64encode(final.encode()).decode()))
        status, el = self._sasl_result()
        if status != "success":
            return (status, el)
        data = base64.b64decode(el.text or "").decode()
        if data != "v=" + base64.b64encode(server_sig).decode():
            raise AssertionError("server signature mismatch: %r" % data)
        return ("success", el)

    # -- helpers ----------------------------------------------------------------
    def iq(self, xml_body, type_="set", id_=None, to=None, frm=None, timeout=None):
        id_ = id_ or "iq%d" % int(time.monotonic() * 1e6)
        attrs = "type='%s' id='%s'" % (type_, id_)
        if to:
            attrs += " to=%s" % quoteattr(to)
        if frm:
            attrs += " from=%s" % quoteattr(frm)
        self.send("<iq %s>%s</iq>" % (attrs, xml_body))
        return self.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.get("id") == id_, timeout)

    def wait_for(self, pred, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("%s: expected element did not arrive" % self.name)
            el = self.read(remaining)
            if pred(el):
                return el


def component_login(port, server, identity, secret, cafile, mech="SCRAM-SHA-256", name="component", rcvbuf=None):
    c = Conn(port, name=name, rcvbuf=rcvbuf)
    c.open_stream(server, frm=identity)
    c.read_features()
    c.starttls(server, cafile)
    c.open_stream(server, frm=identity)
    c.read_features()
    if mech == "PLAIN":
        status, detail = c.sasl_plain(identity, secret)
    else:
        status, detail = c.sasl_scram(identity, secret, mech[len("SCRAM-"):])
    if status != "success":
        raise AssertionError("component auth failed: %s %r" % (status, detail))
    c.open_stream(server, frm=identity)
    c.features = c.read_features()
    return c


def bind_xml(hostname, op="bind"):
    inner = "" if hostname is None else "<hostname>%s</hostname>" % escape(hostname)
    return "<%s xmlns='%s'>%s</%s>" % (op, NS_COMPONENT, inner, op)


def c2s_login(port, server, user, password, cafile, resource="wire"):
    c = Conn(port, name="c2s")
    c.open_stream(server)
    c.read_features()
    c.starttls(server, cafile)
    c.open_stream(server)
    c.read_features()
    status, detail = c.sasl_scram(user, password, "SHA-1")
    if status != "success":
        raise AssertionError("c2s auth failed: %s %r" % (status, detail))
    c.open_stream(server)
    c.read_features()
    res = c.iq("<bind xmlns='%s'><resource>%s</resource></bind>" % (NS_BIND, resource))
    c.jid = res.find(q(NS_BIND, "bind")).find(q(NS_BIND, "jid")).text
    c.send("<presence/>")
    return c
