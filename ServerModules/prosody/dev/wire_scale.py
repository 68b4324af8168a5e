"""Wire checks for several instances of one domain: balancing, XEP-0354, transfers.

Run by wire_test.py against its own Prosody (SCALE_COMPONENTS below); every check
talks to the server over real sockets, with real c2s users.
"""

import os
import select
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import prosody_env as pe
import xmppwire as xw
from xmppwire import q, NS_CLIENT, NS_COMPONENT

NS_BALANCING = "urn:xmpp:component:balancing:0"
NS_CMR = "urn:xmpp:cmr:0"
NS_CXF = "urn:xmpp:cxf"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
AFFINITY = "urn:xmpp:component:balancing:affinity"

SCALE_IDENTITY = "scale.localhost"
SCALE_DOMAINS = ["rr.localhost", "w.localhost", "all.localhost", "aff.localhost", "ma.localhost",
                 "lock.localhost", "kill.localhost", "xfer.localhost"]

SCALE_COMPONENTS = """
Component "%(identity)s" "component_xep0225"
    component_secret = "%(secret)s"
    component_xep0225_hostnames = { %(hostnames)s }

Component "rr.localhost" "component_xep0225"
    component_xep0225_routing = "roundrobin"
Component "w.localhost" "component_xep0225"
    component_xep0225_routing = "urn:xmpp:cmr:weighted"
Component "all.localhost" "component_xep0225"
    component_xep0225_routing = "all"
Component "aff.localhost" "component_xep0225"
Component "ma.localhost" "component_xep0225"
    component_xep0225_routing = "mostactive"
Component "lock.localhost" "component_xep0225"
    component_xep0225_routing = "roundrobin"
    component_xep0225_routing_locked = true
Component "kill.localhost" "component_xep0225"
Component "xfer.localhost" "component_xep0225"
""" % {"identity": SCALE_IDENTITY, "secret": pe.SECRET,
       "hostnames": ", ".join('"%s"' % d for d in SCALE_DOMAINS)}


def pump(conns, until=None, quiet=1.0, limit=30.0):
    """Reads from every connection, single-threaded (one TLS object is never used by two
    threads), until `until()` is true, nothing arrived for `quiet` seconds, or `limit`
    passed. Returns {conn: [elements]}; a connection the peer closed is marked .closed."""
    got = {c: [] for c in conns}
    start = last = time.monotonic()

    def collect(c):
        while c.queue:
            kind, el = c.queue.pop(0)
            if kind == "element":
                got[c].append(el)

    for c in conns:
        collect(c)
    while True:
        now = time.monotonic()
        if until is not None and until(got):
            return got
        if now - last > quiet or now - start > limit:
            return got
        live = [c for c in conns if not c.closed]
        if not live:
            return got
        ready = [c for c in live if hasattr(c.sock, "pending") and c.sock.pending()]
        if not ready:
            r, _, _ = select.select([c.sock for c in live], [], [], min(0.05, quiet))
            ready = [c for c in live if c.sock in r]
        for c in ready:
            try:
                c._pump(time.monotonic() + 1)
            except (xw.StreamClosed, TimeoutError, OSError):
                c.closed = True
            collect(c)
            last = time.monotonic()


def ids(elements, prefix, name="message"):
    return [el.get("id") for el in elements
            if el.tag == q(NS_CLIENT, name) and (el.get("id") or "").startswith(prefix)]


def run_scale(env, check, run_case):
    S, SEC, CA, P = pe.SERVER, pe.SECRET, env.cafile, env.port
    opened = []

    def instance(hostname, weight=None, name=None, conn=None):
        c = conn or xw.component_login(P, S, SCALE_IDENTITY, SEC, CA, name=name or hostname)
        if conn is None:
            opened.append(c)
        attr = " xmlns:b='%s' b:weight='%d'" % (NS_BALANCING, weight) if weight else ""
        r = c.iq("<bind xmlns='%s'><hostname%s>%s</hostname></bind>" % (NS_COMPONENT, attr, hostname))
        if r.get("type") != "result":
            raise AssertionError("bind %s failed: %r" % (hostname, xw.stanza_error_condition(r)))
        return c

    def close_all(conns):
        for c in conns:
            c.close_stream()
            c.close()

    senders = [xw.c2s_login(env.c2s_port, S, pe.USER, pe.USER_PASS, CA, resource="u%d" % i) for i in range(6)]
    alice = senders[0]
    pump(senders, quiet=0.2)  # presence echoes etc.

    def blast(sender, to, prefix, n, conns, chunk=250, expect=None):
        """Sends n messages, reading every connection between chunks, until `expect` (n by
        default) copies arrived or were bounced; returns what each got and the errors the
        sender got back."""
        expect = expect or n
        got = {c: [] for c in conns}
        errors = []
        for start in range(0, n, chunk):
            sender.send("".join("<message to='%s' id='%s%d' type='chat'><body>m</body></message>"
                                % (to, prefix, i) for i in range(start, min(n, start + chunk))))
            part = pump(conns + [sender], quiet=0.02, limit=2)
            for c in conns:
                got[c] += ids(part[c], prefix)
            errors += [el for el in part[sender] if (el.get("id") or "").startswith(prefix)]
        total = lambda g: sum(len(ids(g[c], prefix)) for c in conns) + len(
            [el for el in g[sender] if (el.get("id") or "").startswith(prefix)])
        rest = pump(conns + [sender], until=lambda g: total(g) + sum(map(len, got.values())) + len(errors) >= expect,
                    quiet=2.0, limit=30)
        for c in conns:
            got[c] += ids(rest[c], prefix)
        errors += [el for el in rest[sender] if (el.get("id") or "").startswith(prefix)]
        return got, errors

    # ---- balancing ------------------------------------------------------------------
    def roundrobin():
        conns = [instance("rr.localhost/i%d" % i) for i in range(3)]
        t0 = time.monotonic()
        got, errors = blast(alice, "svc@rr.localhost", "rr-", 3000, conns)
        counts = [len(got[c]) for c in conns]
        check("roundrobin: three instances on three streams share 3 000 messages within +-10%% (%s, %.1fs)"
              % (counts, time.monotonic() - t0),
              all(900 <= n <= 1100 for n in counts) and sum(counts) == 3000 and not errors,
              "%s errors=%d" % (counts, len(errors)))
        check("roundrobin: no message reached two instances",
              len(set(sum((got[c] for c in conns), []))) == 3000)
        close_all(conns)
    run_case("roundrobin", roundrobin)

    def weighted():
        conns = [instance("w.localhost/i%d" % w, weight=w) for w in (1, 2, 3)]
        got, errors = blast(alice, "svc@w.localhost", "w-", 3000, conns)
        counts = [len(got[c]) for c in conns]
        check("weighted: weights 1, 2, 3 (urn:xmpp:component:balancing:0) share 3 000 messages in proportion "
              "(500/1000/1500 +-10%%: %s)" % counts,
              all(abs(n - want) <= want // 10 for n, want in zip(counts, (500, 1000, 1500))) and not errors,
              "%s errors=%d" % (counts, len(errors)))
        close_all(conns)
    run_case("weighted", weighted)

    def deliver_all():
        conns = [instance("all.localhost/i%d" % i) for i in range(3)]
        got, errors = blast(alice, "svc@all.localhost", "all-", 3000, conns, expect=9000)
        counts = [len(set(got[c])) for c in conns]
        check("all: each of three instances gets all 3 000 messages (%s)" % counts,
              counts == [3000, 3000, 3000] and not errors, "%s errors=%d" % (counts, len(errors)))
        alice.send("<iq type='get' id='all-iq' to='all.localhost'><query xmlns='%s'/></iq>" % NS_VERSION)
        part = pump(conns, quiet=0.5)
        n = sum(len(ids(part[c], "all-iq", "iq")) for c in conns)
        check("all: an IQ request reaches exactly one instance (%d)" % n, n == 1)
        for c in conns:  # answer it, so alice is not left waiting
            for el in part[c]:
                if el.get("id") == "all-iq":
                    c.send("<iq type='result' id='all-iq' from='all.localhost' to='%s'/>" % el.get("from"))
        pump([alice], quiet=0.3)
        close_all(conns)
    run_case("all", deliver_all)

    def affinity():
        a = instance("aff.localhost/i0")
        b = instance("aff.localhost/i1")
        # two instances on one stream as well: three instances, two streams
        instance("aff.localhost/i2", conn=b)
        conns = [a, b]
        for round_ in range(50):
            for k, s in enumerate(senders):
                s.send("<message to='svc@aff.localhost' id='aff-%d-%d' type='chat'><body>m</body></message>"
                       % (k, round_))
        got = pump(conns + senders, until=lambda g: sum(len(ids(g[c], "aff-")) for c in conns) >= 300, quiet=2)
        where = {}
        for c in conns:
            for i in ids(got[c], "aff-"):
                where.setdefault(i.split("-")[1], set()).add(c.name)
        check("affinity (the default): each of 6 users' 50 messages stay on one stream (%s)"
              % {k: sorted(v) for k, v in sorted(where.items())},
              len(where) == 6 and all(len(v) == 1 for v in where.values()))
        per = {c.name: len(ids(got[c], "aff-")) for c in conns}
        # round-robin over three instances, two of them on stream b: 2 users on a, 4 on b
        check("affinity: new users are spread round-robin over the instances (stream with 1 instance: 100, "
              "stream with 2: 200; got %s)" % per, per == {a.name: 100, b.name: 200})
        status = env.shell("module:info('component_xep0225', 'aff.localhost')")
        check("admin shell: aff.localhost shows 3 instances, affinity", "3 instances, affinity" in status,
              status.strip()[-200:])
        state["aff"] = (a, b, got)
    state = {}
    run_case("affinity", affinity)

    def iq_answers():
        a, b = state["aff"][0], state["aff"][1]
        # Both streams ask alice's u0 with the same 'from' and the same id: only the module's
        # tracking (and id stamping) can bring each answer back to the stream that asked.
        target = senders[0].jid
        for c in (a, b):
            for n in range(10):
                c.send("<iq type='get' id='ask-%d' from='aff.localhost' to='%s'><query xmlns='%s'/></iq>"
                       % (n, target, NS_VERSION))
        got = pump([senders[0]], until=lambda g: len(ids(g[senders[0]], "", "iq")) >= 20, quiet=2)
        reqs = [el for el in got[senders[0]] if el.tag == q(NS_CLIENT, "iq") and el.get("type") == "get"]
        stamped = len([r for r in reqs if not r.get("id").startswith("ask-")])
        for r in reqs:
            senders[0].send("<iq type='result' id='%s' to='%s'><query xmlns='%s'><name>n</name></query></iq>"
                            % (r.get("id"), r.get("from"), NS_VERSION))
        answers = pump([a, b], until=lambda g: sum(len(ids(g[c], "ask-", "iq")) for c in (a, b)) >= 20, quiet=2)
        mine = {c.name: sorted(ids(answers[c], "ask-", "iq")) for c in (a, b)}
        want = sorted("ask-%d" % n for n in range(10))
        check("IQ answers: 2 streams x 10 requests with the same from and ids: each stream gets exactly its 10 "
              "answers, ids restored (%d requests, %d stamped)" % (len(reqs), stamped),
              all(v == want for v in mine.values()) and len(reqs) == 20, repr(mine))
    run_case("iq answers", iq_answers)

    def most_active():
        conns = [instance("ma.localhost/i%d" % i) for i in range(3)]
        got = []
        for k in (1, 2):
            conns[k].send("<message from='ma.localhost' to='%s' type='chat' id='ma-hello-%d'><body>hi</body></message>"
                          % (alice.jid, k))
            pump([alice], until=lambda g: any(el.get("id") == "ma-hello-%d" % k for el in g[alice]), quiet=2)
            alice.send("".join("<message to='svc@ma.localhost' id='ma%d-%d' type='chat'><body>m</body></message>"
                               % (k, i) for i in range(30)))
            part = pump(conns, until=lambda g: sum(len(ids(g[c], "ma%d-" % k)) for c in conns) >= 30, quiet=2)
            got.append([len(ids(part[c], "ma%d-" % k)) for c in conns])
        check("mostactive: messages go to the instance that sent last (i1 then i2: %s)" % got,
              got == [[0, 30, 0], [0, 0, 30]])
        close_all(conns)
    run_case("mostactive", most_active)

    # ---- XEP-0354 ----------------------------------------------------------------------
    def cmr():
        conns = [instance("rr.localhost/c%d" % i) for i in range(2)]
        c = conns[0]
        r = c.iq("<query xmlns='%s'/>" % NS_DISCO_INFO, type_="get", to=S, frm="rr.localhost")
        feats = [f.get("var") for f in r.iter(q(NS_DISCO_INFO, "feature"))]
        check("XEP-0354: the server's disco#info (asked by a component) lists urn:xmpp:cmr:0 besides "
              "mod_disco's features", NS_CMR in feats and NS_DISCO_INFO in feats, repr(feats))
        r = c.iq("<query xmlns='%s'/>" % NS_CMR, type_="get", frm="rr.localhost/c0")
        query = r.find(q(NS_CMR, "query"))
        active = [e.get("algorithm") for e in query.findall(q(NS_CMR, "active"))] if query is not None else []
        available = sorted(e.get("algorithm") for e in query.findall(q(NS_CMR, "available"))) if query is not None else []
        check("XEP-0354 query: one <active/> (roundrobin, as configured) and the five algorithms available",
              r.get("type") == "result" and active == ["urn:xmpp:cmr:roundrobin"]
              and available == sorted(["urn:xmpp:cmr:all", "urn:xmpp:cmr:mostactive", "urn:xmpp:cmr:roundrobin",
                                       "urn:xmpp:cmr:weighted", AFFINITY]),
              "%r %r" % (active, available))
        r = c.iq("<cmr xmlns='%s' algorithm='urn:xmpp:cmr:all'/>" % NS_CMR, frm="rr.localhost", to="rr.localhost")
        check("XEP-0354 set (to its own domain): all -> result", r.get("type") == "result", repr(error_of(r)))
        alice.send("".join("<message to='svc@rr.localhost' id='cmr-%d' type='chat'><body>m</body></message>" % i
                           for i in range(20)))
        part = pump(conns, until=lambda g: all(len(ids(g[x], "cmr-")) >= 20 for x in conns), quiet=2)
        counts = [len(ids(part[x], "cmr-")) for x in conns]
        check("XEP-0354 set takes effect at once: both instances get all 20 messages (%s)" % counts,
              counts == [20, 20])
        r = c.iq("<query xmlns='%s'/>" % NS_CMR, type_="get", frm="rr.localhost")
        active = [e.get("algorithm") for e in r.find(q(NS_CMR, "query")).findall(q(NS_CMR, "active"))]
        check("XEP-0354 query after the set: active is urn:xmpp:cmr:all", active == ["urn:xmpp:cmr:all"],
              repr(active))
        r = c.iq("<cmr xmlns='%s' algorithm='urn:xmpp:cmr:forkalways'/>" % NS_CMR, frm="rr.localhost")
        check("XEP-0354 set of an unknown algorithm -> bad-request", error_of(r)[1] == "bad-request",
              repr(error_of(r)))
        r = c.iq("<cmr xmlns='%s' algorithm='%s'/>" % (NS_CMR, "roundrobin"), frm="rr.localhost")
        check("XEP-0354 set by short name (roundrobin) -> result", r.get("type") == "result", repr(error_of(r)))
        lk = instance("lock.localhost/l0")
        r = lk.iq("<cmr xmlns='%s' algorithm='urn:xmpp:cmr:all'/>" % NS_CMR, frm="lock.localhost")
        check("XEP-0354 set on a domain with component_xep0225_routing_locked -> not-allowed",
              error_of(r) == ("cancel", "not-allowed"), repr(error_of(r)))
        out = env.shell("component_xep0225:routing('lock.localhost', 'weighted')")
        r = lk.iq("<query xmlns='%s'/>" % NS_CMR, type_="get", frm="lock.localhost")
        active = [e.get("algorithm") for e in r.find(q(NS_CMR, "query")).findall(q(NS_CMR, "active"))]
        check("admin shell component_xep0225:routing() changes even a locked domain's algorithm",
              active == ["urn:xmpp:cmr:weighted"], "%r %s" % (active, out.strip()[-200:]))
        close_all(conns + [lk])
    run_case("xep-0354", cmr)

    # ---- an instance dies mid-traffic --------------------------------------------------
    def kill_mid_traffic():
        conns = [instance("kill.localhost/k%d" % i) for i in range(3)]
        victim = conns[1]
        n, chunk = 3000, 100
        got = {c: [] for c in conns}
        errors = []
        killed_at = None
        for start in range(0, n, chunk):
            for k, s in enumerate(senders):
                s.send("".join("<message to='svc@kill.localhost' id='kill-%d' type='chat'><body>m</body></message>"
                               % i for i in range(start, min(n, start + chunk)) if i % len(senders) == k))
            if start == 1000:
                victim.close()  # abrupt: no </stream:stream>, unread data is dropped by the kernel
                killed_at = start + chunk
            part = pump([c for c in conns if c is not victim or killed_at is None] + senders, quiet=0.02, limit=2)
            for c in part:
                if c in got:
                    got[c] += ids(part[c], "kill-")
                else:
                    errors += [el for el in part[c] if (el.get("id") or "").startswith("kill-")]
        survivors = [conns[0], conns[2]]

        def settled(g):
            seen = set(sum(got.values(), [])) | set(sum((ids(g[c], "kill-") for c in survivors), []))
            errs = len(errors) + sum(len([el for el in g[s] if (el.get("id") or "").startswith("kill-")])
                                     for s in senders)
            return len(seen) + errs >= n
        rest = pump(survivors + senders, until=settled, quiet=3, limit=30)
        for c in survivors:
            got[c] += ids(rest[c], "kill-")
        for s in senders:
            errors += [el for el in rest[s] if (el.get("id") or "").startswith("kill-")]
        delivered = set(sum(got.values(), []))
        bounced = set(el.get("id") for el in errors)
        silent = n - len(delivered | bounced)
        after = [len([i for i in got[c] if int(i.split("-")[1]) >= killed_at]) for c in conns]
        print("      kill mid-traffic: %d sent, %d delivered (per instance %s; after the kill %s), %d bounced "
              "with an error, %d silent" % (n, len(delivered), [len(got[c]) for c in conns], after,
                                           len(bounced), silent), flush=True)
        check("killed instance: its share moves to the two others (all %d messages sent after the kill "
              "reach k0 and k2)" % (n - killed_at), after[1] == 0 and after[0] + after[2] == n - killed_at,
              repr(after))
        check("killed instance: every message delivered or bounced with an error (%d delivered, %d bounced, "
              "%d silent)" % (len(delivered), len(bounced), silent), silent == 0)
        close_all(survivors)
    run_case("kill", kill_mid_traffic)

    close_all([c for c in opened if not c.closed])
    close_all(senders)


def error_of(el):
    return xw.stanza_error_condition(el)
