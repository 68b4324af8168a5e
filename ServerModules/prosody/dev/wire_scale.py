"""Wire checks for several instances of one domain: balancing, XEP-0354, transfers.

Run by wire_test.py against its own Prosody (SCALE_COMPONENTS below); every check
talks to the server over real sockets, with real c2s users.
"""

import select
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
OTHER_USER = "bob"  # registered by wire_test.py; alice is the admin
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
MOVE_NODE = "xmpp:prosody.im/mod_component_xep0225#move"
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
Component "bogus.localhost" "component_xep0225"
    component_xep0225_routing = "fastest"
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
            if kind == "element" and not c.handle_sm(el):
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
        r = c.iq("<cmr xmlns='%s' algorithm='weighted'/>" % NS_CMR, frm="rr.localhost")
        close_all(conns)
        # the set lasts while the domain has instances: once the last left, the configured
        # algorithm is back (as in the reference server)
        c = instance("rr.localhost/c9")
        active, deadline = None, time.monotonic() + 10
        while active != ["urn:xmpp:cmr:roundrobin"] and time.monotonic() < deadline:
            r2 = c.iq("<query xmlns='%s'/>" % NS_CMR, type_="get", frm="rr.localhost")
            active = [e.get("algorithm") for e in r2.find(q(NS_CMR, "query")).findall(q(NS_CMR, "active"))]
            if active != ["urn:xmpp:cmr:roundrobin"]:
                time.sleep(0.1)
        check("XEP-0354 set lasts until the domain's last instance leaves; then the configured algorithm is back",
              r.get("type") == "result" and active == ["urn:xmpp:cmr:roundrobin"], repr(active))
        conns = [c]
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

    def instance_addressing():
        a = instance("rr.localhost/p0")
        b = instance("rr.localhost/p1")
        # a stanza to domain/resource of a bound instance goes to that instance
        alice.send("".join("<message to='rr.localhost/p1' id='to-p1-%d' type='chat'><body>m</body></message>" % i
                           for i in range(10)))
        got = pump([a, b], until=lambda g: len(ids(g[b], "to-p1-")) >= 10, quiet=2)
        check("a stanza to domain/resource goes to that instance (10/10 to p1, 0 to p0)",
              len(ids(got[b], "to-p1-")) == 10 and not ids(got[a], "to-p1-"))
        # an instance may send from its own domain/resource, not from another stream's
        a.send("<message from='rr.localhost/p0' to='%s' id='from-p0'><body>x</body></message>" % alice.jid)
        got = pump([alice], until=lambda g: any(el.get("id") == "from-p0" for el in g[alice]), quiet=2)
        check("an instance sends from its own domain/resource",
              any(el.get("id") == "from-p0" and el.get("type") != "error" for el in got[alice]))
        a.send("<message from='rr.localhost/p1' to='%s' id='from-p1'><body>x</body></message>" % alice.jid)
        cond, _, _ = a.expect_stream_error()
        check("'from' = an instance another stream holds -> invalid-from", cond == "invalid-from", str(cond))
        close_all([a, b])
    run_case("instance addressing", instance_addressing)

    def unknown_algorithm():
        text = env.shell("component_xep0225:routing('bogus.localhost')")
        log = env.log_tail(10 ** 6)
        check("component_xep0225_routing = \"fastest\" (unknown): logged as an error, the domain uses affinity",
              'Unknown component_xep0225_routing "fastest" for bogus.localhost' in log
              and "bogus.localhost: affinity" in text, text.strip()[-200:])
    run_case("unknown algorithm", unknown_algorithm)

    # ---- an instance dies mid-traffic --------------------------------------------------
    def kill_mid_traffic(sm):
        """3 000 messages from 6 users to kill.localhost (3 instances, affinity); the
        instance k1 dies abruptly after 1 100 were sent, with a chunk routed to it unread."""
        conns = [instance("kill.localhost/k%d" % i) for i in range(3)]
        if sm:
            for c in conns:
                c.enable_sm()
        victim = conns[1]
        n, chunk = 3000, 100
        got = {c: [] for c in conns}
        errors = []
        killed_at = t_moved = None
        for start in range(0, n, chunk):
            for k, s in enumerate(senders):
                s.send("".join("<message to='svc@kill.localhost' id='kill-%d' type='chat'><body>m</body></message>"
                               % i for i in range(start, min(n, start + chunk)) if i % len(senders) == k))
            if start == 1000:
                # Mid-traffic: this chunk is on its way to the victim (routed into its socket,
                # not read) when it dies abruptly: no </stream:stream>, and the kernel drops
                # what it had not read.
                pump(senders, quiet=0.1, limit=0.3)
                victim_users = set(int(i.split("-")[1]) % len(senders) for i in got[victim])
                victim.close()
                t_kill = time.monotonic()
                killed_at = start + chunk
            part = pump([c for c in conns if c is not victim or killed_at is None] + senders, quiet=0.02, limit=2)
            for c in part:
                if c in got:
                    got[c] += ids(part[c], "kill-")
                else:
                    errors += [el for el in part[c] if (el.get("id") or "").startswith("kill-")]
            if killed_at is not None and t_moved is None and any(
                    int(i.split("-")[1]) % len(senders) in victim_users and c is not victim
                    for c in conns for i in ids(part.get(c, []), "kill-")):
                t_moved = time.monotonic() - t_kill
        survivors = [conns[0], conns[2]]

        def settled(g):
            seen = set(sum(got.values(), [])) | set(sum((ids(g[c], "kill-") for c in survivors), []))
            errs = len(errors) + sum(len([el for el in g[s] if (el.get("id") or "").startswith("kill-")])
                                     for s in senders)
            return len(seen) + errs >= n
        rest = pump(survivors + senders, until=settled, quiet=3 if sm else 1, limit=30)
        for c in survivors:
            got[c] += ids(rest[c], "kill-")
        for s in senders:
            errors += [el for el in rest[s] if (el.get("id") or "").startswith("kill-")]
        every = sum(got.values(), [])
        delivered = set(every)
        bounced = set(el.get("id") for el in errors)
        silent = n - len(delivered | bounced)
        after = [len([i for i in got[c] if int(i.split("-")[1]) >= killed_at]) for c in conns]
        label = "with XEP-0198 acks" if sm else "without stream management"
        print("      kill mid-traffic %s: %d sent, %d delivered (per instance %s; sent after the kill %s), "
              "%d delivered twice, %d bounced with an error, %d silent; the victim's users reached the others "
              "%s after the kill" % (label, n, len(delivered), [len(got[c]) for c in conns], after,
                                     len(every) - len(delivered), len(bounced), silent,
                                     "%.3f s" % t_moved if t_moved is not None else "never"), flush=True)
        if sm:
            check("killed instance: its share moves to the two others (all %d messages sent after the kill "
                  "reach k0 and k2)" % (n - killed_at), after[1] == 0 and after[0] + after[2] == n - killed_at,
                  repr(after))
            check("killed instance (XEP-0198 acks): every message delivered or bounced with an error "
                  "(%d delivered, %d bounced, %d silent)" % (len(delivered), len(bounced), silent), silent == 0)
        close_all(survivors)
    run_case("kill", lambda: kill_mid_traffic(sm=True))
    # The same without acknowledgements, for the record: what was in flight to the victim
    # is lost, and no server can tell (TCP does not say what the peer's process read).
    run_case("kill without sm", lambda: kill_mid_traffic(sm=False))

    def sm_basics():
        c = xw.component_login(P, S, SCALE_IDENTITY, SEC, CA, name="sm")
        check("XEP-0198: post-auth features offer <sm xmlns='urn:xmpp:sm:3'/>",
              c.features.find(q(xw.NS_SM, "sm")) is not None)
        enabled = c.enable_sm()
        check("XEP-0198 <enable/> -> <enabled/> without resumption", enabled.get("resume") is None
              and enabled.get("id") is None)
        c.sm = False  # answer by hand below
        c.send("<enable xmlns='%s'/>" % xw.NS_SM)
        el = c.read()
        check("a second <enable/> -> <failed><unexpected-request/>", el.tag == q(xw.NS_SM, "failed"), el.tag)
        instance("kill.localhost/sm", conn=c)
        c.send("<message from='kill.localhost' to='%s' id='sm-1'><body>x</body></message><r xmlns='%s'/>"
               % (alice.jid, xw.NS_SM))
        el = c.wait_for(lambda e: e.tag == q(xw.NS_SM, "a"))
        check("XEP-0198 <r/> -> <a h='2'/> (the bind IQ and the message)", el.get("h") == "2", el.get("h"))
        c.send("<a xmlns='%s' h='7'/>" % xw.NS_SM)  # only the bind result was sent to it
        cond, _, _ = c.expect_stream_error()
        check("XEP-0198 <a/> acknowledging more than was sent -> undefined-condition", cond == "undefined-condition",
              str(cond))
        c.close()
        c = xw.component_login(P, S, SCALE_IDENTITY, SEC, CA, name="sm-early")
        c.send("<r xmlns='%s'/>" % xw.NS_SM)
        cond, _, _ = c.expect_stream_error()
        check("XEP-0198 <r/> before <enable/> -> unsupported-stanza-type", cond == "unsupported-stanza-type", str(cond))
        c.close()
        pump([alice], quiet=0.3)
    run_case("sm basics", sm_basics)

    def last_instance_dies():
        # The last instance of a domain dies with stanzas it never acknowledged: they
        # bounce to their senders (the domain has nobody left), none is lost silently.
        c = instance("kill.localhost/last")
        c.enable_sm()
        alice.send("".join("<message to='svc@kill.localhost' id='last-%d' type='chat'><body>m</body></message>" % i
                           for i in range(50)))
        time.sleep(0.3)  # routed into its socket, never read
        c.close()
        got = pump([alice], until=lambda g: len(ids(g[alice], "last-")) >= 50, quiet=3)
        errs = [el for el in got[alice] if (el.get("id") or "").startswith("last-")]
        conds = set(error_of(el) for el in errs)
        check("the last instance dies with 50 unacknowledged messages: all 50 bounce to the sender "
              "(wait/remote-server-timeout) (%d, %s)" % (len(errs), conds),
              len(set(el.get("id") for el in errs)) == 50 and conds == {("wait", "remote-server-timeout")})
    run_case("last instance", last_instance_dies)

    def metrics():
        out = env.shell("stats:show('component_xep0225')")
        for name in ("rerouted", "dropped", "routing_changes", "bound_hostnames"):
            check("metric prosody_mod_component_xep0225/%s is exported" % name,
                  "prosody_mod_component_xep0225/%s" % name in out, out.strip()[-400:])
    run_case("metrics", metrics)

    # ---- transfers (XEP-0051) and see-other-host, from the admin shell -----------------
    def shell_async(command):
        out = []
        t = threading.Thread(target=lambda: out.append(env.shell(command, timeout=60)), daemon=True)
        t.start()
        return t, out

    def transfers():
        x0 = instance("xfer.localhost/x0")
        x1 = instance("xfer.localhost/x1")
        t, out = shell_async("component_xep0225:transfer('xfer.localhost/x0', '127.0.0.1:5999')")
        order = x0.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.find(q(NS_CXF, "query")) is not None,
                            timeout=20)
        query = order.find(q(NS_CXF, "query"))
        check("transfer: the instance's stream gets <iq type='set' from=server><query xmlns='urn:xmpp:cxf'>"
              "<domain>localhost</domain><server>127.0.0.1:5999</server>",
              order.get("type") == "set" and order.get("from") == S and order.get("to") == SCALE_IDENTITY
              and query.findtext(q(NS_CXF, "domain")) == S and query.findtext(q(NS_CXF, "server")) == "127.0.0.1:5999",
              ET.tostring(order).decode()[:300])
        x0.send("<iq type='result' id='%s' from='xfer.localhost' to='%s'/>" % (order.get("id"), S))
        t.join(30)
        text = out[0] if out else ""
        check("transfer: the shell command reports the component's answer (1 accepted)",
              "1 stream(s) ordered to 127.0.0.1:5999: 1 accepted, 0 refused, 0 did not answer" in text,
              text.strip()[-300:])
        t, out = shell_async("component_xep0225:transfer('xfer.localhost', 'other.example:5270')")
        answered = 0
        for c, answer in ((x0, "refuse"), (x1, "silence")):
            o = c.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.find(q(NS_CXF, "query")) is not None,
                           timeout=20)
            if answer == "refuse":
                c.send("<iq type='error' id='%s' from='xfer.localhost' to='%s'><error type='cancel'>"
                       "<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                       % (o.get("id"), S))
            answered += 1
        t.join(40)
        text = out[0] if out else ""
        check("transfer of a domain reaches both instances' streams; one refuses, one does not answer (reported "
              "after component_xep0225_transfer_timeout)",
              answered == 2 and "2 stream(s) ordered to other.example:5270: 0 accepted, 1 refused, 1 did not answer"
              in text and "not-acceptable" in text, text.strip()[-300:])
        text = env.shell("component_xep0225:transfer('xfer.localhost', 'bad host')")
        check("transfer to an invalid server address is refused by the command", "Give the new server" in text,
              text.strip()[-200:])
        text = env.shell("component_xep0225:transfer('nobody.localhost', '127.0.0.1:1')")
        check("transfer of a name no stream matches is refused by the command", "No component stream matches" in text,
              text.strip()[-200:])
        text = env.shell("component_xep0225:redirect('xfer.localhost/x0', '[::1]:5270')")
        try:
            x0.read(timeout=10)
            cond, seen = None, None
        except xw.StreamError as e:
            cond, seen = e.condition, e.element.findtext("{urn:ietf:params:xml:ns:xmpp-streams}see-other-host")
        check("redirect: the stream ends with <see-other-host>[::1]:5270</see-other-host>",
              cond == "see-other-host" and seen == "[::1]:5270", "%s %r %s" % (cond, seen, text.strip()[-200:]))
        alice.send("".join("<message to='svc@xfer.localhost' id='xf-%d' type='chat'><body>m</body></message>" % i
                           for i in range(10)))
        got = pump([x1], until=lambda g: len(ids(g[x1], "xf-")) >= 10, quiet=2)
        check("after the redirect the domain's traffic goes to the remaining instance (10/10)",
              len(ids(got[x1], "xf-")) == 10, str(len(ids(got[x1], "xf-"))))
        text = env.shell("component_xep0225:list()")
        check("admin shell component_xep0225:list() shows the streams, their instances and each domain's algorithm",
              "xfer.localhost/x1" in text and "rr.localhost: roundrobin" in text, text.strip()[-400:])
        close_all([x1])
    run_case("transfers", transfers)

    def adhoc_move():
        def execute(user):
            return user.iq("<command xmlns='%s' node='%s' action='execute'/>" % (NS_COMMANDS, MOVE_NODE), to=S)
        r = execute(alice)
        cmd = r.find(q(NS_COMMANDS, "command"))
        fields = [f.get("var") for f in cmd.iter(q(NS_DATA, "field"))] if cmd is not None else []
        check("ad-hoc command (admin alice): 'Move component streams' answers with its form (who, server, how)",
              r.get("type") == "result" and cmd.get("status") == "executing" and fields[:3] == ["who", "server", "how"],
              "%s %r" % (r.get("type"), fields))
        x5 = instance("xfer.localhost/x5")
        alice.send("<iq type='set' id='move-1' to='%s'><command xmlns='%s' node='%s' sessionid='%s'>"
                   "<x xmlns='%s' type='submit'><field var='who'><value>xfer.localhost/x5</value></field>"
                   "<field var='server'><value>127.0.0.1:5998</value></field>"
                   "<field var='how'><value>transfer</value></field></x></command></iq>"
                   % (S, NS_COMMANDS, MOVE_NODE, cmd.get("sessionid"), NS_DATA))
        order = x5.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.find(q(NS_CXF, "query")) is not None,
                            timeout=20)
        x5.send("<iq type='result' id='%s' from='xfer.localhost' to='%s'/>" % (order.get("id"), S))
        done = alice.wait_for(lambda el: el.get("id") == "move-1", timeout=20)
        note = done.find(q(NS_COMMANDS, "command"))
        text = note.findtext(q(NS_COMMANDS, "note")) if note is not None else None
        check("ad-hoc command: the transfer is ordered and the component's answer reported (%r)" % text,
              order.find(q(NS_CXF, "query")).findtext(q(NS_CXF, "server")) == "127.0.0.1:5998"
              and note is not None and note.get("status") == "completed" and "1 accepted" in (text or ""))
        bob = xw.c2s_login(env.c2s_port, S, OTHER_USER, pe.USER_PASS, CA, resource="b")
        r = execute(bob)
        check("ad-hoc command from a user who is not an admin -> forbidden", error_of(r)[1] == "forbidden",
              repr(error_of(r)))
        out = env.shell(">require'core.modulemanager'.reload('*', 'component_xep0225')")
        r = execute(alice)
        check("ad-hoc command still offered after a reload of the module",
              r.get("type") == "result" and r.find(q(NS_COMMANDS, "command")) is not None, out.strip()[-200:])
        close_all([x5, bob])
    run_case("adhoc", adhoc_move)

    close_all([c for c in opened if not c.closed])
    close_all(senders)


def error_of(el):
    return xw.stanza_error_condition(el)
