#!/usr/bin/env python3
"""Wire-level checks of mod_component_xep0225 against a throw-away Prosody.

Usage:  python3 ServerModules/prosody/dev/wire_test.py [--keep]

Starts Prosody (as the prosody user when run as root) on 127.0.0.1 with free
ports and a self-signed certificate, runs every check, prints PASS/FAIL per
check, stops Prosody by PID and exits non-zero if any check failed.
--keep leaves the temporary directory (config, logs) in place.
"""

import os
import signal
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prosody_env as pe  # noqa: E402
import xmppwire as xw  # noqa: E402
from xmppwire import q, NS_CLIENT, NS_COMPONENT, NS_SASL, NS_TLS, NS_STREAMS  # noqa: E402

TOTAL_BUDGET = 120  # seconds for the whole run

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print("%s  %s%s" % ("PASS" if cond else "FAIL", name, ("  -- " + detail) if (detail and not cond) else ""),
          flush=True)
    return bool(cond)


def run_case(name, fn):
    try:
        fn()
    except Exception as e:  # a crashed case is a failed check
        check(name + " (raised)", False, "%s: %s" % (type(e).__name__, e))
        traceback.print_exc()


def error_of(el):
    return xw.stanza_error_condition(el)


def bind(c, host, op="bind", to=None):
    return c.iq(xw.bind_xml(host, op), to=to)


def main():
    keep = "--keep" in sys.argv
    watchdog = threading.Timer(TOTAL_BUDGET, lambda: os.kill(os.getpid(), signal.SIGALRM))
    env = pe.ProsodyEnv(auth_timeout=2, max_stanza=65536)
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("overall time budget exceeded")))
    watchdog.daemon = True
    watchdog.start()
    try:
        env.prepare()
        env.prosodyctl("register", pe.USER, pe.SERVER, pe.USER_PASS)
        env.start()
        print("Prosody %s on 127.0.0.1: xep0225 port %d, c2s port %d (dir %s)"
              % (env.version(), env.port, env.c2s_port, env.dir), flush=True)
        run_all(env)
        if "--quick" not in sys.argv:
            env2 = pe.ProsodyEnv(extra_global_config="component_xep0225_allow_unencrypted = true")
            try:
                env2.prepare()
                env2.start()
                run_plaintext(env2)
            finally:
                env2.terminate()
                failed2 = any(not ok for _, ok in results)
                if failed2:
                    print(env2.log_tail(30))
                env2.cleanup(keep=keep)
    except Exception as e:
        check("harness", False, "%s: %s" % (type(e).__name__, e))
        traceback.print_exc()
    finally:
        watchdog.cancel()
        failed = [n for n, ok in results if not ok]
        if failed:
            print("---- prosody log tail ----")
            print(env.log_tail(80))
        env.cleanup(keep=keep or bool(failed and "--keep-on-fail" in sys.argv))
        if keep:
            print("kept", env.dir)
        print("%d checks, %d failed" % (len(results), len(failed)))
        sys.exit(1 if failed or not results else 0)


def run_all(env):
    S, ID, SEC, CA, P = pe.SERVER, pe.IDENTITY, pe.SECRET, env.cafile, env.port

    # ---- stream negotiation ----------------------------------------------------------
    def features_before_tls():
        c = xw.Conn(P, name="pre-tls")
        hdr = c.open_stream(S, frm=ID)
        check("stream header: from = server domain, version 1.0, has id",
              hdr.get("from") == S and hdr.get("version") == "1.0" and hdr.get("id"))
        f = c.read_features()
        tls = f.find(q(NS_TLS, "starttls"))
        check("features before TLS: <starttls><required/></starttls>",
              tls is not None and tls.find(q(NS_TLS, "required")) is not None)
        check("features before TLS: no SASL mechanisms", f.find(q(NS_SASL, "mechanisms")) is None)
        c.send("<auth xmlns='%s' mechanism='PLAIN'>AGNvbXAubG9jYWxob3N0AHgK</auth>" % NS_SASL)
        el = c.read()
        check("SASL before TLS -> <failure><encryption-required/>",
              el.tag == q(NS_SASL, "failure") and el.find(q(NS_SASL, "encryption-required")) is not None)
        c.starttls(S, CA)
        check("STARTTLS with the VirtualHost certificate (verified against it)", c.tls_version is not None,
              str(c.tls_version))
        c.open_stream(S, frm=ID)
        f = c.read_features()
        mechs = sorted(m.text for m in f.iter(q(NS_SASL, "mechanism")))
        check("features after TLS: PLAIN, SCRAM-SHA-1, SCRAM-SHA-256 and no -PLUS",
              mechs == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], repr(mechs))
        check("features after TLS: no starttls", f.find(q(NS_TLS, "starttls")) is None)
        c.close()
    run_case("features", features_before_tls)

    def unknown_host():
        c = xw.Conn(P, name="badhost")
        c.open_stream("nowhere.invalid")
        cond, _, closed = c.expect_stream_error()
        check("stream 'to' not a VirtualHost -> host-unknown", cond == "host-unknown", str(cond))
        c.close()
    run_case("host-unknown", unknown_host)

    def stanza_before_auth():
        c = xw.Conn(P, name="preauth")
        c.open_stream(S); c.read_features(); c.starttls(S, CA); c.open_stream(S); c.read_features()
        c.send("<message to='alice@localhost' from='a.localhost'><body>x</body></message>")
        cond, _, closed = c.expect_stream_error()
        check("non-SASL element before auth -> not-authorized", cond == "not-authorized", str(cond))
        c.close()
    run_case("not-authorized", stanza_before_auth)

    def tls_then(name):
        c = xw.Conn(P, name=name)
        c.open_stream(S, frm=ID); c.read_features(); c.starttls(S, CA)
        c.open_stream(S, frm=ID); c.read_features()
        return c

    def wrong_secret():
        c = tls_then("wrongsecret")
        st1 = c.sasl_scram(ID, "wrong", "SHA-256")
        check("wrong secret (SCRAM-SHA-256) -> not-authorized", st1 == ("failure", "not-authorized"), repr(st1))
        st2 = c.sasl_plain(ID, "wrong")
        check("wrong secret (PLAIN) -> not-authorized", st2 == ("failure", "not-authorized"), repr(st2))
        st3 = c.sasl_scram("nobody.localhost", "x", "SHA-1")
        check("unknown identity (SCRAM-SHA-1) -> not-authorized", st3 == ("failure", "not-authorized"), repr(st3))
        cond, _, _ = c.expect_stream_error()
        check("third SASL failure -> policy-violation stream error", cond == "policy-violation", str(cond))
        c.close()
    run_case("sasl failures", wrong_secret)

    def legacy_identity():
        c = tls_then("legacy")
        st1 = c.sasl_plain(pe.LEGACY, pe.LEGACY_SECRET)
        check("secret of a plain XEP-0114 Component is refused -> not-authorized",
              st1 == ("failure", "not-authorized"), repr(st1))
        c.close()
    run_case("legacy identity", legacy_identity)

    def auth_timeout():
        c = xw.Conn(P, name="idle")
        c.open_stream(S)
        t0 = time.monotonic()
        cond, _, _ = c.expect_stream_error(timeout=env.auth_timeout + 3)
        dt = time.monotonic() - t0
        check("idle unauthenticated stream closed after auth timeout (connection-timeout, %.1fs)" % dt,
              cond == "connection-timeout" and dt < env.auth_timeout + 2, str(cond))
        c.close()
    run_case("auth timeout", auth_timeout)

    def mechanisms_ok():
        for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"):
            c = xw.component_login(P, S, ID, SEC, CA, mech=mech, name=mech)
            b = c.features.find(q(NS_COMPONENT, "bind"))
            check("%s login; post-auth features <bind xmlns='urn:xmpp:component:0'><required/>" % mech,
                  b is not None and b.find(q(NS_COMPONENT, "required")) is not None)
            c.close_stream(); c.close()
        c = tls_then("scram-y")
        st1 = c.sasl_scram(ID, SEC, "SHA-256", gs2_flag="y")
        check("SCRAM with gs2 flag 'y' (client could do -PLUS) accepted", st1[0] == "success", repr(st1))
        c.close()
    run_case("mechanisms", mechanisms_ok)

    # ---- binding ------------------------------------------------------------------------
    comp = xw.component_login(P, S, ID, SEC, CA, name="comp1")
    state = {"comp": comp}

    def binding():
        r = bind(comp, "a.localhost")
        hn = r.find(q(NS_COMPONENT, "bind"))
        check("bind a.localhost -> result echoing <hostname>",
              r.get("type") == "result" and hn is not None and hn.findtext(q(NS_COMPONENT, "hostname")) == "a.localhost")
        r = bind(comp, "B.localhost", to=S)
        check("bind B.localhost (to=server) -> result with prepped hostname b.localhost",
              r.get("type") == "result" and r.find(q(NS_COMPONENT, "bind")).findtext(q(NS_COMPONENT, "hostname")) == "b.localhost")
        r = bind(comp, "a.localhost")
        check("re-bind a.localhost on the same stream is idempotent (result)", r.get("type") == "result")
        for host, want, label in [
            (None, "bad-request", "missing hostname"),
            ("", "bad-request", "empty hostname"),
            ("user@a.localhost", "bad-request", "hostname with a node"),
            ("bad host..x", "bad-request", "invalid hostname"),
            ("a.localhost/worker1", "feature-not-implemented", "domain/resource"),
            ("c.localhost", "not-allowed", "declared but not in component_xep0225_hostnames"),
            ("d.localhost", "not-allowed", "listed but not declared as component_xep0225 host"),
            ("localhost", "not-allowed", "the VirtualHost itself"),
        ]:
            r = bind(comp, host)
            et, cond = error_of(r)
            check("bind %s -> %s" % (label, want), r.get("type") == "error" and cond == want, "%s %s" % (et, cond))
        comp2 = xw.component_login(P, S, ID, SEC, CA, name="comp2")
        r = bind(comp2, "a.localhost")
        check("bind a.localhost from a second stream -> conflict", error_of(r)[1] == "conflict", repr(error_of(r)))
        r = comp2.iq("<unbind xmlns='%s'><hostname>a.localhost</hostname></unbind>" % NS_COMPONENT)
        check("unbind a hostname bound by another stream -> item-not-found", error_of(r)[1] == "item-not-found")
        state["comp2"] = comp2
        r = bind(comp, "b.localhost", op="unbind")
        check("unbind b.localhost -> empty result", r.get("type") == "result" and len(r) == 0)
        r = bind(comp, "b.localhost", op="unbind")
        check("unbind b.localhost again -> item-not-found", error_of(r)[1] == "item-not-found")
        r = comp.iq(xw.bind_xml("a.localhost"), type_="get")
        check("bind with type='get' -> bad-request", error_of(r)[1] == "bad-request")
    run_case("binding", binding)

    # ---- routing ------------------------------------------------------------------------
    cli = xw.c2s_login(env.c2s_port, S, pe.USER, pe.USER_PASS, CA)
    state["cli"] = cli

    def is_msg(el):
        return el.tag == q(NS_CLIENT, "message")

    def routing():
        cli.send("<message to='echo@a.localhost' id='m1' type='chat'><body>hello component</body></message>")
        m = comp.wait_for(lambda el: is_msg(el) and el.get("id") == "m1")
        check("c2s -> user@a.localhost delivered to the binding stream (from = client full JID)",
              m.findtext(q(NS_CLIENT, "body")) == "hello component" and m.get("from") == cli.jid,
              "from=%s" % m.get("from"))
        comp.send("<message from='echo@a.localhost' to='%s' id='m2' type='chat'><body>hello back</body></message>" % cli.jid)
        m = cli.wait_for(lambda el: is_msg(el) and el.get("id") == "m2")
        check("component -> client message delivered (from = echo@a.localhost)",
              m.findtext(q(NS_CLIENT, "body")) == "hello back" and m.get("from") == "echo@a.localhost")
        # IQ round trip: client asks the component, component answers
        cli.send("<iq type='get' id='q1' to='a.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        iq = comp.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.get("id") == "q1")
        comp.send("<iq type='result' id='q1' from='a.localhost' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'>"
                  "<identity category='component' type='generic' name='wire'/></query></iq>" % iq.get("from"))
        r = cli.wait_for(lambda el: el.tag == q(NS_CLIENT, "iq") and el.get("id") == "q1")
        check("IQ round trip client -> component -> client", r.get("type") == "result" and r.get("from") == "a.localhost")
        # IQ round trip from the component to the server (mod_ping)
        r = comp.iq("<ping xmlns='urn:xmpp:ping'/>", type_="get", to=S, frm="a.localhost")
        check("IQ round trip component -> server (ping) -> component", r.get("type") == "result", r.get("type"))
        # component IQ to an offline user -> error routed back
        r = comp.iq("<query xmlns='jabber:iq:version'/>", type_="get", to="bob@localhost/x", frm="a.localhost")
        check("IQ to an unavailable JID -> error back to the component", r.get("type") == "error", r.get("type"))
        # stanza without 'to'
        r = comp.iq("<query xmlns='jabber:iq:version'/>", type_="get", to=None, frm="a.localhost")
        check("stanza without 'to' -> bad-request", error_of(r)[1] == "bad-request", repr(error_of(r)))
    run_case("routing", routing)

    def bounce_unbound():
        cli.send("<message to='x@b.localhost' id='m3' type='chat'><body>anyone?</body></message>")
        r = cli.wait_for(lambda el: el.get("id") == "m3")
        check("message to unbound b.localhost bounces wait/remote-server-timeout",
              r.get("type") == "error" and error_of(r) == ("wait", "remote-server-timeout"), repr(error_of(r)))
        r = cli.iq("<query xmlns='jabber:iq:version'/>", type_="get", to="c.localhost")
        check("IQ to never-bound c.localhost bounces wait/remote-server-timeout",
              error_of(r) == ("wait", "remote-server-timeout"), repr(error_of(r)))
    run_case("bounce", bounce_unbound)

    # ---- stream errors from the component side ----------------------------------------
    def addressing_errors():
        c = xw.component_login(P, S, ID, SEC, CA, name="nofrom")
        bind(c, "b.localhost")
        c.send("<message to='%s'><body>x</body></message>" % cli.jid)
        cond, _, _ = c.expect_stream_error()
        check("stanza without 'from' -> improper-addressing", cond == "improper-addressing", str(cond))
        c.close()
        c = xw.component_login(P, S, ID, SEC, CA, name="badfrom")
        bind(c, "b.localhost")
        c.send("<message from='x@a.localhost' to='%s'><body>x</body></message>" % cli.jid)
        cond, _, _ = c.expect_stream_error()
        check("'from' under a hostname bound by another stream -> invalid-from", cond == "invalid-from", str(cond))
        c.close()
        # b.localhost was bound by that stream: it must be free again at once
        c = xw.component_login(P, S, ID, SEC, CA, name="rebind")
        r = bind(c, "b.localhost")
        check("hostname free again after the binding stream was closed", r.get("type") == "result")
        c.send("<foo xmlns='urn:example:not-client'/>")
        cond, _, _ = c.expect_stream_error()
        check("non-jabber:client element after auth -> unsupported-stanza-type",
              cond == "unsupported-stanza-type", str(cond))
        c.close()
        c = xw.component_login(P, S, ID, SEC, CA, name="big")
        bind(c, "b.localhost")
        c.send("<message from='b.localhost' to='%s'><body>%s</body></message>" % (cli.jid, "x" * (env.max_stanza * 3)))
        cond, _, _ = c.expect_stream_error()
        check("stanza larger than component_xep0225_max_stanza_size -> policy-violation",
              cond == "policy-violation", str(cond))
        c.close()
    run_case("addressing", addressing_errors)

    def bounce_after_disconnect():
        comp2 = state["comp2"]
        r = bind(comp2, "b.localhost")
        check("second stream binds b.localhost", r.get("type") == "result")
        comp2.close()  # abrupt: no </stream:stream>
        # Stanzas the server routes before it reads the EOF go into the dead socket (TCP
        # cannot tell); so probe every 100 ms and require a bounce within 1 s.
        t0 = time.monotonic()
        ok, n = False, 0
        while not ok and time.monotonic() - t0 < 1.0:
            n += 1
            cli.send("<message to='y@b.localhost' id='m4-%d' type='chat'><body>still there?</body></message>" % n)
            try:
                r = cli.wait_for(lambda el: (el.get("id") or "").startswith("m4-"), timeout=0.1)
            except TimeoutError:
                continue
            ok = r.get("type") == "error" and error_of(r) == ("wait", "remote-server-timeout")
        check("after the component disconnects, stanzas bounce within 1 s (%.2fs, %d probes)"
              % (time.monotonic() - t0, n), ok)
    run_case("bounce after disconnect", bounce_after_disconnect)

    # ---- shutdown -----------------------------------------------------------------------
    def shutdown():
        # Close the c2s client first: mod_c2s also waits on shutdown, which would keep the
        # event loop running and hide a missing flush in this module.
        cli.close_stream(); cli.close()
        time.sleep(0.3)
        t0 = time.monotonic()
        rc = env.terminate(timeout=10)
        cond, text, closed = comp.expect_stream_error(timeout=3)
        check("server stop: system-shutdown reaches the component over TLS", cond == "system-shutdown",
              "cond=%s" % cond)
        check("server stop: stream closed with </stream:stream>", closed)
        check("server stop: prosody exited cleanly (rc=%s, %.1fs)" % (rc, time.monotonic() - t0), rc == 0)
    run_case("shutdown", shutdown)


def run_plaintext(env):
    """component_xep0225_allow_unencrypted = true: SCRAM without TLS, never PLAIN."""
    S, ID, SEC, CA, P = pe.SERVER, pe.IDENTITY, pe.SECRET, env.cafile, env.port

    def plaintext():
        c = xw.Conn(P, name="plaintext")
        c.open_stream(S, frm=ID)
        f = c.read_features()
        tls = f.find(q(NS_TLS, "starttls"))
        mechs = sorted(m.text for m in f.iter(q(NS_SASL, "mechanism")))
        check("[allow_unencrypted] starttls offered but not required",
              tls is not None and tls.find(q(NS_TLS, "required")) is None)
        check("[allow_unencrypted] SCRAM offered before TLS, PLAIN not", mechs == ["SCRAM-SHA-1", "SCRAM-SHA-256"],
              repr(mechs))
        st1 = c.sasl_plain(ID, SEC)
        check("[allow_unencrypted] PLAIN before TLS -> invalid-mechanism", st1 == ("failure", "invalid-mechanism"),
              repr(st1))
        st2 = c.sasl_scram(ID, SEC, "SHA-256")
        check("[allow_unencrypted] SCRAM-SHA-256 without TLS succeeds", st2[0] == "success", repr(st2))
        c.open_stream(S, frm=ID)
        f = c.read_features()
        check("[allow_unencrypted] bind feature after auth", f.find(q(NS_COMPONENT, "bind")) is not None)
        r = bind(c, "a.localhost")
        check("[allow_unencrypted] bind works", r.get("type") == "result")
        c.close_stream(); c.close()
    run_case("plaintext", plaintext)


if __name__ == "__main__":
    main()
