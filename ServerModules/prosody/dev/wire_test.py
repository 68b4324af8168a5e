#!/usr/bin/env python3
"""Wire-level checks of mod_component_xep0225 against a throw-away Prosody.

Usage:  python3 ServerModules/prosody/dev/wire_test.py [--keep]

Starts Prosody (as the prosody user when run as root) on 127.0.0.1 with free
ports and a self-signed certificate, runs every check, prints PASS/FAIL per
check, stops Prosody by PID and exits non-zero if any check failed.
--keep leaves the temporary directory (config, logs) in place.
"""

import base64
import os
import signal
import ssl
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prosody_env as pe  # noqa: E402
import wire_scale  # noqa: E402
import xmppwire as xw  # noqa: E402
from xmppwire import q, NS_CLIENT, NS_COMPONENT, NS_SASL, NS_TLS, NS_STREAMS  # noqa: E402

NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_BALANCING = "urn:xmpp:component:balancing:0"

TOTAL_BUDGET = 240  # seconds for the whole run

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
    env = pe.ProsodyEnv(auth_timeout=2, max_stanza=65536,
                        extra_global_config="component_xep0225_max_send_buffer_size = 262144\n"
                                            "statistics = \"internal\"\nstatistics_interval = \"manual\"")
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("overall time budget exceeded")))
    watchdog.daemon = True
    watchdog.start()
    try:
        if "--scale-only" not in sys.argv:
            env.prepare()
            env.prosodyctl("register", pe.USER, pe.SERVER, pe.USER_PASS)
            env.start()
            print("Prosody %s on 127.0.0.1: xep0225 port %d, c2s port %d (dir %s)"
                  % (env.version(), env.port, env.c2s_port, env.dir), flush=True)
            run_all(env)
        # several instances of one domain: their own server, so that the checks above
        # and these do not share bindings
        env3 = pe.ProsodyEnv(extra_components=wire_scale.SCALE_COMPONENTS,
                             extra_global_config="component_xep0225_transfer_timeout = 2\n"
                                                 "admins = { \"%s@%s\" }\n" % (pe.USER, pe.SERVER) +
                                                 "statistics = \"internal\"\nstatistics_interval = \"manual\"")
        try:
            env3.prepare()
            env3.prosodyctl("register", pe.USER, pe.SERVER, pe.USER_PASS)
            env3.prosodyctl("register", wire_scale.OTHER_USER, pe.SERVER, pe.USER_PASS)  # not an admin
            env3.start()
            print("Several instances of one domain (Prosody on xep0225 port %d, c2s port %d)"
                  % (env3.port, env3.c2s_port), flush=True)
            wire_scale.run_scale(env3, check, run_case)
        finally:
            alive = env3.proc is not None and env3.proc.poll() is None
            rc3 = env3.terminate()
            failed3 = any(not ok for _, ok in results)
            if failed3:
                print("---- prosody (several instances) log tail; it was %s (exit code %s) ----"
                      % ("running" if alive else "no longer running", rc3))
                print(env3.log_tail(40))
                print(env3.stdout_tail())
            env3.cleanup(keep=keep or (failed3 and "--keep-on-fail" in sys.argv))
            if keep or (failed3 and "--keep-on-fail" in sys.argv):
                print("kept", env3.dir)
        if "--quick" not in sys.argv and "--scale-only" not in sys.argv:
            # the deprecated option name on purpose (still accepted), and core's
            # disable_sasl_mechanisms
            env2 = pe.ProsodyEnv(extra_global_config="component_xep0225_allow_unencrypted = true\n"
                                                     "disable_sasl_mechanisms = { \"SCRAM-SHA-1\" }")
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
    state = {}

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
        cb = f.find(q(NS_SASL_CB, "sasl-channel-binding"))
        cb_types = sorted(t.get("type") for t in cb) if cb is not None else []
        # Prosody 13's util.sasl offers SCRAM-*-PLUS with tls-exporter; 0.12's cannot (tls-unique only).
        state["plus"] = "SCRAM-SHA-256-PLUS" in mechs
        if state["plus"]:
            check("[Prosody 13] features after TLS: PLAIN, SCRAM-SHA-1(-PLUS), SCRAM-SHA-256(-PLUS)",
                  mechs == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"],
                  repr(mechs))
            check("[Prosody 13] XEP-0440 <sasl-channel-binding> lists tls-exporter", cb_types == ["tls-exporter"],
                  repr(cb_types))
        else:
            check("[Prosody 0.12] features after TLS: PLAIN, SCRAM-SHA-1, SCRAM-SHA-256 and no -PLUS",
                  mechs == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], repr(mechs))
            check("[Prosody 0.12] no XEP-0440 <sasl-channel-binding>", cb is None)
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
        cond, _, _ = c.expect_stream_error(timeout=env.auth_timeout + 30)
        dt = time.monotonic() - t0
        check("idle unauthenticated stream closed by the auth timeout: connection-timeout (configured %ds, took %.1fs)"
              % (env.auth_timeout, dt), cond == "connection-timeout", str(cond))
        c.close()
    run_case("auth timeout", auth_timeout)

    def scram_plus():
        def plus_conn(name):
            c = xw.Conn(P, name=name)
            c.open_stream(S, frm=ID); c.read_features()
            if not c.starttls_exporter(S, CA):
                c.close()
                return None
            c.open_stream(S, frm=ID); c.read_features()
            return c
        c = plus_conn("scram-plus")
        if c is None:
            print("SKIP  [Prosody 13] SCRAM-SHA-256-PLUS login (needs pyOpenSSL for tls-exporter)", flush=True)
            return
        st1 = c.sasl_scram(ID, SEC, "SHA-256", gs2_flag="p=tls-exporter", cb_data=c.tls_exporter())
        ok = st1[0] == "success"
        if ok:
            c.open_stream(S, frm=ID)
            f = c.read_features()
            ok = f.find(q(NS_COMPONENT, "bind")) is not None and bind(c, "b.localhost").get("type") == "result"
        check("[Prosody 13] SCRAM-SHA-256-PLUS with tls-exporter channel binding: login and bind", ok, repr(st1))
        c.close()
        c = plus_conn("scram-plus-bad")
        st1 = c.sasl_scram(ID, SEC, "SHA-1", gs2_flag="p=tls-exporter", cb_data=b"\0" * 32)
        check("[Prosody 13] SCRAM-SHA-1-PLUS with wrong channel-binding data -> failure",
              st1[0] == "failure", repr(st1))
        c.close()

    def mechanisms_ok():
        for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"):
            c = xw.component_login(P, S, ID, SEC, CA, mech=mech, name=mech)
            b = c.features.find(q(NS_COMPONENT, "bind"))
            check("%s login; post-auth features <bind xmlns='urn:xmpp:component:0'><required/>" % mech,
                  b is not None and b.find(q(NS_COMPONENT, "required")) is not None)
            c.close_stream(); c.close()
        c = tls_then("scram-y")
        st1 = c.sasl_scram(ID, SEC, "SHA-256", gs2_flag="y")
        if state.get("plus"):
            check("[Prosody 13] SCRAM with gs2 flag 'y' while -PLUS is offered -> malformed-request (downgrade)",
                  st1 == ("failure", "malformed-request"), repr(st1))
        else:
            check("[Prosody 0.12] SCRAM with gs2 flag 'y' (client could do -PLUS) accepted", st1[0] == "success",
                  repr(st1))
        c.close()
        if state.get("plus"):
            scram_plus()
    run_case("mechanisms", mechanisms_ok)

    def missing_stream_to():
        c = xw.Conn(P, name="noto")
        c._new_parser()
        c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        cond, _, _ = c.expect_stream_error()
        check("stream header without 'to' -> improper-addressing", cond == "improper-addressing", str(cond))
        c.close()
    run_case("missing to", missing_stream_to)

    def no_tls_to_offer():
        # Bug: with no TLS context (and unencrypted streams not allowed) an empty
        # <stream:features/> was sent and the stream waited for the auth timeout.
        c = xw.Conn(P, name="nocert")
        t0 = time.monotonic()
        c.open_stream(pe.NOCERT, frm=ID)
        cond, text, _ = c.expect_stream_error(timeout=env.auth_timeout + 30)
        check("VirtualHost without usable TLS -> stream error undefined-condition at once, not the auth "
              "timeout (took %.2fs)" % (time.monotonic() - t0), cond == "undefined-condition", "%s %s" % (cond, text))
        c.close()
    run_case("no tls to offer", no_tls_to_offer)

    def parent_tls():
        c = xw.Conn(P, name="tls-parent")
        c.open_stream("sub." + pe.TLSPARENT, frm=ID)
        c.read_features()
        c.starttls("sub." + pe.TLSPARENT, None)
        with open(env.parent_cert) as f:
            parent_der = ssl.PEM_cert_to_DER_cert(f.read())
        check("VirtualHost without TLS settings uses its parent domain's certificate (as mod_tls)",
              c.peer_cert_der == parent_der)
        c.close()
    run_case("parent tls", parent_tls)

    def pipelined_starttls():
        # <starttls/>, a new stream header and <auth mechanism='PLAIN'> in one write: the
        # cleartext after <starttls/> must never be processed as an authentication.
        c = xw.Conn(P, name="pipelined")
        c.open_stream(S, frm=ID)
        c.read_features()
        plain = base64.b64encode(("\0%s\0%s" % (ID, SEC)).encode()).decode()
        c.send("<starttls xmlns='%s'/>"
               "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='%s' to='%s' version='1.0'>"
               "<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_TLS, NS_STREAMS, S, NS_SASL, plain))
        raw = c.read_raw_until_closed(timeout=10)
        check("pipelined STARTTLS + cleartext auth: <proceed/> sent", b"<proceed" in raw, repr(raw[:300]))
        check("pipelined STARTTLS + cleartext auth: no <success/> and no SASL reply in the clear",
              b"<success" not in raw and b"xmpp-sasl" not in raw, repr(raw[:400]))
        check("pipelined STARTTLS + cleartext auth: the cleartext is a not-well-formed stream error",
              b"not-well-formed" in raw, repr(raw[-300:]))
        c.close()
    run_case("pipelined starttls", pipelined_starttls)

    def bind_before_sasl():
        c = tls_then("bind-before-sasl")
        c.send("<iq type='set' id='early'>%s</iq>" % xw.bind_xml("a.localhost"))
        cond, _, _ = c.expect_stream_error()
        check("bind IQ before SASL -> not-authorized stream error", cond == "not-authorized", str(cond))
        c.close()
    run_case("bind before sasl", bind_before_sasl)

    def authzid():
        c = tls_then("authzid-same")
        st1 = c.sasl_plain(ID, SEC, authzid=ID)
        check("PLAIN with authzid = the identity -> success", st1[0] == "success", repr(st1))
        c.close()
        c = tls_then("authzid-other")
        st1 = c.sasl_plain(ID, SEC, authzid="b.localhost")
        check("PLAIN with authzid != the identity -> invalid-authzid", st1 == ("failure", "invalid-authzid"), repr(st1))
        st2 = c.sasl_scram(ID, SEC, "SHA-256", authzid="b.localhost")
        check("SCRAM with authzid != the identity -> invalid-authzid", st2 == ("failure", "invalid-authzid"), repr(st2))
        c.close()
        c = tls_then("authzid-scram-same")
        st1 = c.sasl_scram(ID, SEC, "SHA-1", authzid=ID)
        check("SCRAM with authzid = the identity -> success", st1[0] == "success", repr(st1))
        c.close()
    run_case("authzid", authzid)

    def file_secrets():
        if not env.file_secrets:
            print("SKIP  secrets from FileContents()/Credential() (Prosody 13 config only)", flush=True)
            return
        for identity, how in ((pe.FILE_IDENTITY, "FileContents()"), (pe.CRED_IDENTITY, "Credential()")):
            c = tls_then("secret-" + identity)
            st1 = c.sasl_scram(identity, SEC, "SHA-256")
            check("[Prosody 13] component_secret = %s authenticates" % how, st1[0] == "success", repr(st1))
            c.close()
    run_case("file secrets", file_secrets)

    def disabled_identity():
        # Bug: a Component with enabled = false authenticated (only the raw config was read).
        c = tls_then("disabled-id")
        st1 = c.sasl_plain(pe.OFF_IDENTITY, SEC)
        check("identity declared with enabled = false -> not-authorized", st1 == ("failure", "not-authorized"),
              repr(st1))
        c.close()
    run_case("disabled identity", disabled_identity)

    # ---- binding ------------------------------------------------------------------------
    comp = xw.component_login(P, S, ID, SEC, CA, name="comp1")
    state["comp"] = comp

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
            ("a.localhost/", "bad-request", "domain/ with an empty resource"),
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
        # XEP-0225's domain/resource form: instances of one domain, on one stream or several
        r = bind(comp, "A.localhost/Worker1")
        hn = r.find(q(NS_COMPONENT, "bind"))
        check("bind a.localhost/Worker1 (an instance of a bound domain) -> result echoing a.localhost/Worker1",
              r.get("type") == "result" and hn is not None
              and hn.findtext(q(NS_COMPONENT, "hostname")) == "a.localhost/Worker1",
              repr(error_of(r)))
        r = bind(comp, "a.localhost/worker2")
        check("a second instance of a.localhost on the same stream -> result", r.get("type") == "result",
              repr(error_of(r)))
        r = bind(comp2, "a.localhost/Worker1")
        check("bind an instance another stream holds -> conflict", error_of(r)[1] == "conflict", repr(error_of(r)))
        r = bind(comp2, "a.localhost/worker3")
        check("an instance of a.localhost on a second stream -> result", r.get("type") == "result", repr(error_of(r)))
        status = env.shell("module:info('component_xep0225', 'a.localhost')")
        check("admin shell: a.localhost status counts its 4 instances and the default algorithm (affinity)",
              "Bound by " + ID in status and "4 instances, affinity" in status, status.strip()[-300:])
        r = comp.iq("<bind xmlns='%s'><hostname weight='0'>a.localhost/w0</hostname></bind>" % NS_COMPONENT)
        check("bind with weight='0' -> bad-request", error_of(r)[1] == "bad-request", repr(error_of(r)))
        r = comp.iq("<bind xmlns='%s'><hostname xmlns:b='%s' b:weight='x'>a.localhost/w0</hostname></bind>"
                    % (NS_COMPONENT, NS_BALANCING))
        check("bind with a non-numeric balancing weight -> bad-request", error_of(r)[1] == "bad-request",
              repr(error_of(r)))
        for c, host in ((comp, "a.localhost/Worker1"), (comp, "a.localhost/worker2"), (comp2, "a.localhost/worker3")):
            r = bind(c, host, op="unbind")
            check("unbind the instance %s -> result" % host, r.get("type") == "result", repr(error_of(r)))
        r = bind(comp2, "a.localhost/worker3", op="unbind")
        check("unbind an instance already unbound -> item-not-found", error_of(r)[1] == "item-not-found")
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

    def host_status():
        # Bug: module:context(host):set_status wrote to the global module, so every host
        # showed "Not bound" forever.
        out_a = env.shell("module:info('component_xep0225', 'a.localhost')")
        out_b = env.shell("module:info('component_xep0225', 'b.localhost')")
        check("admin shell: a.localhost status shows it bound", "Bound by " + ID in out_a, out_a.strip()[-300:])
        check("admin shell: b.localhost (unbound again) status shows Not bound", "Not bound" in out_b,
              out_b.strip()[-300:])
    run_case("host status", host_status)

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

    def from_checks():
        c = xw.component_login(P, S, ID, SEC, CA, name="from-server")
        bind(c, "b.localhost")
        c.send("<message from='%s' to='%s'><body>x</body></message>" % (S, cli.jid))
        cond, _, _ = c.expect_stream_error()
        check("'from' = the server domain -> invalid-from", cond == "invalid-from", str(cond))
        c.close()
        c = xw.component_login(P, S, ID, SEC, CA, name="from-unbound")
        c.send("<message from='x@b.localhost' to='%s'><body>x</body></message>" % cli.jid)
        cond, _, _ = c.expect_stream_error()
        check("'from' under an allowed but unbound hostname -> invalid-from", cond == "invalid-from", str(cond))
        c.close()
        c = xw.component_login(P, S, ID, SEC, CA, name="from-after-unbind")
        bind(c, "b.localhost")
        r = bind(c, "b.localhost", op="unbind")
        c.send("<message from='x@b.localhost' to='%s'><body>x</body></message>" % cli.jid)
        cond, _, _ = c.expect_stream_error()
        check("'from' under a hostname this stream unbound -> invalid-from",
              r.get("type") == "result" and cond == "invalid-from", str(cond))
        c.close()
    run_case("from checks", from_checks)

    def after_unbind():
        c = xw.component_login(P, S, ID, SEC, CA, name="unbinder")
        bind(c, "b.localhost")
        r = bind(c, "b.localhost", op="unbind")
        cli.send("<message to='z@b.localhost' id='ub1' type='chat'><body>gone?</body></message>")
        e = cli.wait_for(lambda el: el.get("id") == "ub1")
        got = None
        try:
            got = c.wait_for(lambda el: el.get("id") == "ub1", timeout=0.5)
        except TimeoutError:
            pass
        check("stanza to a hostname after its unbind bounces (wait/remote-server-timeout), not delivered",
              r.get("type") == "result" and error_of(e) == ("wait", "remote-server-timeout") and got is None,
              "%r delivered=%s" % (error_of(e), got is not None))
        c.close_stream(); c.close()
    run_case("after unbind", after_unbind)

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
        # cannot tell); so probe every 100 ms until a bounce arrives (generous bound; the
        # duration is printed, not asserted).
        t0 = time.monotonic()
        ok, n = False, 0
        while not ok and time.monotonic() - t0 < 20.0:
            n += 1
            cli.send("<message to='y@b.localhost' id='m4-%d' type='chat'><body>still there?</body></message>" % n)
            try:
                r = cli.wait_for(lambda el: (el.get("id") or "").startswith("m4-"), timeout=0.1)
            except TimeoutError:
                continue
            ok = r.get("type") == "error" and error_of(r) == ("wait", "remote-server-timeout")
        check("after the component disconnects, stanzas bounce wait/remote-server-timeout (took %.2fs, %d probes)"
              % (time.monotonic() - t0, n), ok)
    run_case("bounce after disconnect", bounce_after_disconnect)

    def send_buffer_cap():
        # A component that stops reading: once more than component_xep0225_max_send_buffer_size
        # bytes wait for it, stanzas to it bounce with wait/resource-constraint.
        slow = xw.component_login(P, S, ID, SEC, CA, name="slow", rcvbuf=4096)
        r = bind(slow, "b.localhost")
        body = "x" * 16000
        sent, n, bounce, t0 = 0, 0, None, time.monotonic()
        limit_bytes = 48 * 1024 * 1024
        while bounce is None and sent < limit_bytes and time.monotonic() - t0 < 60:
            n += 1
            msg = "<message to='slow@b.localhost' id='cap-%d' type='chat'><body>%s</body></message>" % (n, body)
            cli.send(msg)
            sent += len(msg)
            try:
                while True:
                    el = cli.read(timeout=0.001)
                    if (el.get("id") or "").startswith("cap-") and el.get("type") == "error":
                        bounce = el
                        break
            except TimeoutError:
                pass
        check("component not reading: stanzas bounce wait/resource-constraint above the send-buffer cap "
              "(after %d KiB sent, %.1fs)" % (sent // 1024, time.monotonic() - t0),
              r.get("type") == "result" and bounce is not None
              and error_of(bounce) == ("wait", "resource-constraint"),
              repr(error_of(bounce)) if bounce is not None else "no bounce")
        slow.close()
        # the server notices the EOF; b.localhost must become free again
        deadline = time.monotonic() + 20
        ok = False
        c = xw.component_login(P, S, ID, SEC, CA, name="after-slow")
        while not ok and time.monotonic() < deadline:
            ok = bind(c, "b.localhost").get("type") == "result"
            if not ok:
                time.sleep(0.1)
        c.close_stream(); c.close()
        # drain the remaining bounces
        try:
            while True:
                cli.read(timeout=0.5)
        except TimeoutError:
            pass
    run_case("send buffer cap", send_buffer_cap)

    def metrics():
        out = env.shell("stats:show('component_xep0225')")
        for name in ("streams", "bound_hostnames", "binds", "unbinds", "bounces", "auth_failures", "queued_bytes"):
            check("metric prosody_mod_component_xep0225/%s is exported" % name,
                  "prosody_mod_component_xep0225/%s" % name in out, out.strip()[-400:])
        check("metric bounces counts both reasons (unbound, send_buffer_full)",
              "reason=unbound" in out and "reason=send_buffer_full" in out, out.strip()[-400:])
        check("metric streams has authenticated streams", "state=authenticated" in out, out.strip()[-400:])
    run_case("metrics", metrics)

    def deactivated_identity():
        held = tls_then("deact-ok")
        st1 = held.sasl_plain(pe.DEACT_IDENTITY, SEC)
        check("second identity authenticates while active", st1[0] == "success", repr(st1))
        held.open_stream(S, frm=pe.DEACT_IDENTITY)
        held.read_features()
        out = env.shell("host:deactivate('%s')" % pe.DEACT_IDENTITY)
        cond, _, _ = held.expect_stream_error(timeout=10)
        check("deactivating the identity closes its authenticated stream (not-authorized)",
              cond == "not-authorized", str(cond))
        held.close()
        c = tls_then("deact-off")
        st1 = c.sasl_plain(pe.DEACT_IDENTITY, SEC)
        check("identity deactivated at runtime -> not-authorized", st1 == ("failure", "not-authorized"),
              "%r (shell: %s)" % (st1, out.strip()[-200:]))
        c.close()
    run_case("deactivated identity", deactivated_identity)

    def reload_keeps_bindings():
        # Bug: the per-host unload cleared the binding during a reload, so the component's
        # next stanza tripped invalid-from and stanzas to it bounced.
        rl = xw.component_login(P, S, ID, SEC, CA, name="reload")
        r = bind(rl, "b.localhost")
        out = env.shell("module:reload('component_xep0225')")
        cli.send("<message to='echo@b.localhost' id='rl1' type='chat'><body>after reload</body></message>")
        got = None
        try:
            got = rl.wait_for(lambda el: el.get("id") == "rl1", timeout=5)
        except (TimeoutError, xw.StreamError, xw.StreamClosed):
            pass
        check("module reload: stanzas still reach the bound component", r.get("type") == "result" and got is not None,
              out.strip()[-300:])
        ok = False
        try:
            rl.send("<message from='echo@b.localhost' to='%s' id='rl2' type='chat'><body>still here</body></message>"
                    % cli.jid)
            m = cli.wait_for(lambda el: el.get("id") in ("rl2", "rl1"), timeout=5)
            ok = m.get("id") == "rl2" and m.get("type") != "error"
        except (TimeoutError, xw.StreamError, xw.StreamClosed, OSError):
            pass
        check("module reload: the component may still send from its bound hostname", ok)
        # the global module alone (the listener and its code), per-host parts untouched
        out = env.shell(">require'core.modulemanager'.reload('*', 'component_xep0225')")
        cli.send("<message to='echo@b.localhost' id='rl3' type='chat'><body>after global reload</body></message>")
        got = None
        try:
            got = rl.wait_for(lambda el: el.get("id") == "rl3", timeout=5)
        except (TimeoutError, xw.StreamError, xw.StreamClosed):
            pass
        check("reload of the global module alone: the bound component still gets its stanzas", got is not None,
              out.strip()[-300:])
        c = xw.component_login(P, S, ID, SEC, CA, name="after-global-reload")
        r = bind(c, "a.localhost", op="unbind")  # not bound here: item-not-found; proves the new listener works
        status = env.shell("module:info('component_xep0225', 'b.localhost')")
        check("reload of the global module alone: new streams are served, b.localhost status still Bound",
              error_of(r)[1] == "item-not-found" and "Bound by " + ID in status, status.strip()[-300:])
        c.close_stream(); c.close()
        state["reload"] = rl
    run_case("reload", reload_keeps_bindings)

    def unload_closes_holder():
        rl = state.get("reload")
        if rl is None:
            check("unload (skipped: no reload stream)", False)
            return
        # modulemanager directly: the shell's module:unload() also unloads a global module from "*"
        env.shell(">require'core.modulemanager'.unload('b.localhost', 'component_xep0225')")
        cond, text, _ = rl.expect_stream_error(timeout=10)
        check("unloading the module from a bound hostname closes the stream holding it with host-gone",
              cond == "host-gone", "%s %s" % (cond, text))
        rl.close()
        out = env.shell(">require'core.modulemanager'.load('b.localhost', 'component_xep0225')")
        c = xw.component_login(P, S, ID, SEC, CA, name="after-unload")
        r = bind(c, "b.localhost")
        check("after loading it again the hostname can be bound", r.get("type") == "result", out.strip()[-200:])
        c.close_stream(); c.close()
    run_case("unload", unload_closes_holder)

    def log_checks():
        text = env.log_tail(10 ** 7)  # the whole log, written at level debug
        plain_b64 = base64.b64encode(("\0%s\0%s" % (ID, SEC)).encode()).decode()
        check("no secret in the server log (debug level), neither plain nor as PLAIN base64",
              SEC not in text and plain_b64 not in text)
        check("failed authentication logged with identity and client IP (for fail2ban-style tools)",
              'Authentication failed for identity "%s" from 127.0.0.1: not-authorized' % ID in text)
    run_case("log", log_checks)

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
        check("[allow_unencrypted] SCRAM offered before TLS, PLAIN not (SCRAM-SHA-1 disabled by disable_sasl_mechanisms)",
              mechs == ["SCRAM-SHA-256"], repr(mechs))
        st1 = c.sasl_plain(ID, SEC)
        check("[allow_unencrypted] PLAIN before TLS -> invalid-mechanism", st1 == ("failure", "invalid-mechanism"),
              repr(st1))
        st1 = c.sasl_scram(ID, SEC, "SHA-1")
        check("[disable_sasl_mechanisms] SCRAM-SHA-1 -> invalid-mechanism", st1 == ("failure", "invalid-mechanism"),
              repr(st1))
        st2 = c.sasl_scram(ID, SEC, "SHA-256")
        check("[allow_unencrypted] SCRAM-SHA-256 without TLS succeeds", st2[0] == "success", repr(st2))
        c.open_stream(S, frm=ID)
        f = c.read_features()
        check("[allow_unencrypted] bind feature after auth", f.find(q(NS_COMPONENT, "bind")) is not None)
        r = bind(c, "a.localhost")
        check("[allow_unencrypted] bind works", r.get("type") == "result")
        c.close_stream(); c.close()
        log_text = env.log_tail(100000)
        check("[deprecated option] component_xep0225_allow_unencrypted accepted with a deprecation warning",
              "'component_xep0225_allow_unencrypted' is deprecated" in log_text)
    run_case("plaintext", plaintext)


if __name__ == "__main__":
    main()
