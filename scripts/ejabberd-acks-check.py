#!/usr/bin/env python3
"""Operator check of XEP-0114 acknowledgements on ejabberd (ejabberd_service_acks +
mod_component_balancing, ServerModules/ejabberd): no stanza is lost when a component
connection dies.

It opens, over direct TLS, on the component port(s):
  - two connections for the balanced domain (BALANCED), both sending
    <enable xmlns='urn:xmpp:sm:3'/>: "victim" and "survivor" (each may be on another node);
  - one connection for a second domain (SENDER) that sends COUNT messages to BALANCED
    (they go through mod_component_balancing's filter, as a user's would).
The victim acknowledges only the first ACKED messages it gets; the survivor acknowledges
everything. When every message has arrived somewhere, the victim's socket is closed
without </stream:stream> (or, with --kill-pid, that process, e.g. the victim's ejabberd
node, is SIGKILLed). Every message the victim got but did not acknowledge must then reach
the survivor: nothing lost, duplicates only of what the victim got unacknowledged.

It also checks the protocol's edges on the survivor: a second <enable/> gets <failed/>,
<r/> gets <a h/> with the number of stanzas received, and a last connection acknowledging
more than it was sent gets the stream error with <handled-count-too-high/>.

Exit status 0 when every check holds. Example (one node, both domains on the listener):
  scripts/ejabberd-acks-check.py --port 5275 --balanced live.localhost \\
      --sender sender.localhost --secret s3cret
"""

import argparse
import hashlib
import os
import queue
import signal
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET

SM = "urn:xmpp:sm:3"
STREAM = "http://etherx.jabber.org/streams"


class Stream:
    """One XEP-0114 stream over direct TLS; top-level elements arrive on a queue.

    One thread does every TLS read and write (an OpenSSL connection must not be read and
    written from two threads at once); ``send`` only queues.
    """

    def __init__(self, host, port, domain, secret, name, cafile=None):
        self.name = name
        self.domain = domain
        context = ssl.create_default_context(cafile=cafile)
        if cafile is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname=domain)
        self.elements = queue.Queue()
        self.header = queue.Queue()
        self.outbox = queue.Queue()
        self.closed = threading.Event()
        self.killed = threading.Event()
        self.io = threading.Thread(target=self._run, daemon=True)
        self.io.start()
        self.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='{STREAM}' to='{domain}'>"
        )
        stream_id = self.header.get(timeout=30)
        digest = hashlib.sha1((stream_id + secret).encode()).hexdigest()
        self.send(f"<handshake>{digest}</handshake>")
        reply = self.next(30)
        if not reply.tag.endswith("handshake"):
            raise RuntimeError(f"{name}: handshake failed: {ET.tostring(reply)!r}")

    def _run(self):
        parser = ET.XMLPullParser(events=("start", "end"))
        depth = 0
        try:
            while not self.killed.is_set():
                chunks, written = [], []
                while not self.outbox.empty():
                    text, on_written = self.outbox.get()
                    chunks.append(text)
                    if on_written:
                        written.append(on_written)
                if chunks:
                    self.sock.settimeout(None)
                    self.sock.sendall("".join(chunks).encode())
                    for on_written in written:
                        on_written()
                self.sock.settimeout(0.01)
                try:
                    data = self.sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    continue
                if not data:
                    break
                parser.feed(data)
                for event, element in parser.read_events():
                    if event == "start":
                        depth += 1
                        if depth == 1:
                            self.header.put(element.get("id"))
                    else:
                        depth -= 1
                        if depth == 1:
                            self.elements.put(element)
                        elif depth == 0:
                            return
        except (OSError, ET.ParseError):
            pass
        finally:
            if self.killed.is_set():
                # As a killed process: no </stream:stream>, no TLS close_notify.
                os.close(self.sock.detach())
            self.closed.set()
            self.elements.put(None)

    def send(self, text, on_written=None):
        self.outbox.put((text, on_written))

    def next(self, timeout):
        element = self.elements.get(timeout=timeout)
        if element is None:
            raise RuntimeError(f"{self.name}: stream closed")
        return element

    def enable(self):
        self.send(f"<enable xmlns='{SM}'/>")
        reply = self.next(30)
        if reply.tag != f"{{{SM}}}enabled":
            raise RuntimeError(f"{self.name}: <enable/> answered {ET.tostring(reply)!r}")

    def kill(self):
        """Closes the socket without </stream:stream> (as a killed process would)."""
        self.killed.set()
        self.io.join(10)


class Receiver:
    """Collects the message ids a balanced-domain stream receives (in order)."""

    def __init__(self, stream, ack_limit=None):
        self.stream = stream
        self.ack_limit = ack_limit  # acknowledge no more than this many (None: all)
        self.ids = []
        self.handled = 0  # stanzas received (what <a h/> counts)
        self.acknowledged = 0  # the last h sent
        self.others = []  # non-stanza elements
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            element = self.stream.elements.get()
            if element is None:
                return
            local = element.tag.split("}")[-1]
            if local in ("message", "presence", "iq"):
                with self.lock:
                    self.handled += 1
                    if local == "message":
                        self.ids.append(element.get("id"))
                    handled = self.handled
                limit = self.ack_limit
                if limit is None or handled <= limit:
                    if handled % 16 == 0 or handled == limit:
                        self.stream.send(f"<a xmlns='{SM}' h='{handled}'/>", lambda h=handled: self._written(h))
            else:
                with self.lock:
                    self.others.append(element)

    def _written(self, h):
        with self.lock:
            self.acknowledged = h

    def ack_all(self):
        with self.lock:
            handled = self.handled
        self.stream.send(f"<a xmlns='{SM}' h='{handled}'/>")

    def snapshot(self):
        with self.lock:
            return list(self.ids), list(self.others)


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="component port of the victim's node")
    parser.add_argument("--survivor-port", type=int, help="component port of the survivor's node (default: --port)")
    parser.add_argument("--sender-port", type=int, help="component port of the sender's node (default: survivor's)")
    parser.add_argument("--balanced", required=True, help="a domain of mod_component_balancing")
    parser.add_argument("--sender", required=True, help="another component domain of the listener")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--acked", type=int, default=20,
                        help="how many the victim acknowledges at most (every 16, and at this number)")
    parser.add_argument("--kill-after", type=int,
                        help="kill the victim once this many are sent, while sending goes on (default: when all arrived)")
    parser.add_argument("--plain-victim", action="store_true",
                        help="the victim does not enable acknowledgements (the baseline: what is in flight is lost)")
    parser.add_argument("--kill-pid", type=int, help="SIGKILL this process (e.g. the victim's node) instead")
    args = parser.parse_args()
    survivor_port = args.survivor_port or args.port
    sender_port = args.sender_port or survivor_port

    def open_stream(port, domain, name):
        return Stream(args.host, port, domain, args.secret, name, args.cafile)

    victim = open_stream(args.port, args.balanced, "victim")
    if not args.plain_victim:
        victim.enable()
    survivor = open_stream(survivor_port, args.balanced, "survivor")
    survivor.enable()
    # The edges, on the survivor (before its receiver reads its queue).
    survivor.send(f"<enable xmlns='{SM}'/>")
    failed = survivor.next(10)
    assert failed.tag == f"{{{SM}}}failed" and failed.find(
        "{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request"
    ) is not None, ET.tostring(failed)
    survivor.send(f"<r xmlns='{SM}'/>")
    answer = survivor.next(10)
    assert answer.tag == f"{{{SM}}}a" and answer.get("h") == "0", ET.tostring(answer)
    print("second <enable/> -> <failed><unexpected-request/></failed>; <r/> -> <a h='0'/>")

    victims = Receiver(victim, ack_limit=0 if args.plain_victim else args.acked)
    survivors = Receiver(survivor)
    # pg propagates the membership to other nodes asynchronously.
    time.sleep(1)
    sender = open_stream(sender_port, args.sender, "sender")
    sent = [0]

    def send_all():
        for number in range(args.count):
            sender.send(
                f"<message from='probe@{args.sender}' to='{args.balanced}' id='m{number}' type='chat'>"
                f"<body>{number}</body></message>"
            )
            sent[0] = number + 1
            if args.kill_after is not None:
                time.sleep(0.002)

    sending = threading.Thread(target=send_all, daemon=True)
    sending.start()

    def total():
        return len(victims.snapshot()[0]) + len(survivors.snapshot()[0])

    if args.kill_after is None:
        # Quiet: everything has arrived somewhere, then the victim dies.
        wait(lambda: total() >= args.count, 60, f"{args.count} messages to arrive")
        time.sleep(0.5)  # the victim's last <a/> reaches the server
    else:
        # Under traffic: the victim dies while messages are on their way to it.
        wait(lambda: sent[0] >= args.kill_after, 60, f"{args.kill_after} messages sent")
    victim_before = victims.snapshot()[0]
    before = survivors.snapshot()[0]
    print(f"at the kill: sent {sent[0]}, victim got {len(victim_before)} "
          f"(acknowledged {victims.acknowledged} so far), survivor {len(before)}")
    if args.kill_pid:
        os.kill(args.kill_pid, signal.SIGKILL)
    else:
        victim.kill()
    sending.join()
    victim.closed.wait(10)
    victims.thread.join(10)
    victim_ids = victims.snapshot()[0]
    # (Only messages reach the victim: its stanza count is its message count.)
    acked_count = victims.acknowledged
    # A plain victim (no acknowledgements): what it read counts as delivered.
    acked = set(victim_ids) if args.plain_victim else set(victim_ids[:acked_count])
    wanted = {f"m{n}" for n in range(args.count)} - acked
    try:
        wait(lambda: wanted <= set(survivors.snapshot()[0]), 20, "the rest at the survivor")
    except RuntimeError:
        pass  # counted as lost below
    time.sleep(1)  # anything more (duplicates) arrives
    after = survivors.snapshot()[0]
    got = set(after)
    lost = sorted(wanted - got, key=lambda i: int(i[1:]))
    twice = len(after) - len(got)
    acked_again = sorted(acked & got)
    redelivered = sorted(set(victim_ids) & got)
    print(f"after the kill: victim got {len(victim_ids)} in all, acknowledged {len(acked)}; survivor {len(after)} "
          f"({len(after) - len(before)} after the kill); lost {len(lost)} {lost[:5]}; "
          f"delivered twice {len(redelivered)} (got by the victim, unacknowledged: "
          f"{len(victim_ids) - len(acked)}); acknowledged yet routed again {len(acked_again)}; "
          f"twice at the survivor {twice}")
    if args.plain_victim:
        ok = not lost and twice == 0
    elif args.kill_pid:
        # An <a/> written just before the node died may not have been read by it: what it
        # covered is delivered again (at least once), never lost.
        ok = not lost and twice == 0
    else:
        ok = not lost and not acked_again and twice == 0 and len(redelivered) == len(victim_ids) - len(acked)
    again = [i for i in after[len(before):] if i in set(victim_ids[acked_count:])]
    print(f"routed again in the order the victim got them: {again == victim_ids[acked_count:]}")

    # More than was sent: the stream error of XEP-0198 §4.
    survivors.ack_all()
    liar = open_stream(survivor_port, args.balanced, "liar")
    liar.enable()
    liar.send(f"<a xmlns='{SM}' h='5'/>")
    error = liar.next(10)
    detail = error.find(f"{{{SM}}}handled-count-too-high")
    assert error.tag == f"{{{STREAM}}}error" and detail is not None, ET.tostring(error)
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition") is not None
    print(f"<a h='5'/> with nothing sent -> stream error undefined-condition, "
          f"<handled-count-too-high h='{detail.get('h')}' send-count='{detail.get('send-count')}'/>")
    liar.closed.wait(10)
    for stream in (survivor, sender):
        stream.kill()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
