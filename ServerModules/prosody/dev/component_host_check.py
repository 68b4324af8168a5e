#!/usr/bin/env python3
"""component-host instances against mod_component_xep0225 (by hand; not run by CI).

Usage:  python3 ServerModules/prosody/dev/component_host_check.py .build/debug/component-host

Starts the several-instances Prosody of the wire checks, runs two `component-host`
processes (the echo plugin) as the instances w.localhost/eu-1 (weight 1) and
w.localhost/eu-2 (weight 3) of the 'weighted' domain, sends 400 messages from a c2s
user and counts which instance answered (each echoes with its own prefix): 100/300
expected. Then orders eu-1 to the same server with the shell's XEP-0051 transfer and
checks it is accepted and bound again. Stops everything it started by PID.
"""
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prosody_env as pe  # noqa: E402
import wire_scale  # noqa: E402
import xmppwire as xw  # noqa: E402
from xmppwire import q, NS_CLIENT  # noqa: E402

if len(sys.argv) != 2:
    sys.exit(__doc__)
BIN = os.path.abspath(sys.argv[1])
failures = []


def check(name, ok, detail=""):
    print("%s  %s%s" % ("PASS" if ok else "FAIL", name, "  -- " + detail if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(name)


env = pe.ProsodyEnv(extra_components=wire_scale.SCALE_COMPONENTS, auth_timeout=30)
procs = []
work = tempfile.mkdtemp(prefix="component-host-check-")
try:
    env.prepare()
    env.prosodyctl("register", pe.USER, pe.SERVER, pe.USER_PASS)
    env.start()
    pw = os.path.join(work, "pw"); open(pw, "w").write(pe.SECRET + "\n"); os.chmod(pw, 0o600)
    for name, weight in (("eu-1", 1), ("eu-2", 3)):
        d = os.path.join(work, name); os.makedirs(d, mode=0o700, exist_ok=True); os.chmod(d, 0o700)
        cfg = os.path.join(d, "host.toml")
        open(cfg, "w").write('''[server]
host = "127.0.0.1"
port = %d
domain = "localhost"
protocol = "xep0225"
tls = "starttls"
ca_file = "%s"
[auth]
identity = "%s"
password_file = "%s"
[admin]
socket = "%s/admin.sock"
[[component]]
hostname = "w.localhost/%s"
plugin = "echo"
weight = %d
[component.options]
prefix = "%s: "
''' % (env.port, env.cafile, wire_scale.SCALE_IDENTITY, pw, d, name, weight, name))
        log = open(os.path.join(d, "out.log"), "w")
        procs.append(subprocess.Popen([BIN, "run", "--config", cfg], stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + 30
    while time.time() < deadline:
        text = env.log_tail(10**6)
        if "Bound w.localhost/eu-1 (weight 1)" in text and "Bound w.localhost/eu-2 (weight 3)" in text:
            break
        time.sleep(0.2)
    check("both instances bound, eu-2 with its weight (urn:xmpp:component:balancing:0)",
          "Bound w.localhost/eu-1" in text and "Bound w.localhost/eu-2 (weight 3)" in text)
    cli = xw.c2s_login(env.c2s_port, pe.SERVER, pe.USER, pe.USER_PASS, env.cafile)
    cli.send("".join("<message to='echo@w.localhost' id='i%d' type='chat'><body>m%d</body></message>" % (i, i) for i in range(400)))
    got = wire_scale.pump([cli], until=lambda g: len([e for e in g[cli] if e.tag == q(NS_CLIENT, "message")]) >= 400, quiet=5, limit=60)
    bodies = [e.findtext(q(NS_CLIENT, "body")) or "" for e in got[cli] if e.tag == q(NS_CLIENT, "message")]
    errs = [e for e in got[cli] if e.get("type") == "error"]
    counts = collections.Counter(b.split(":")[0] for b in bodies)
    check("weighted 1:3 over two component-host processes: 100/300 of 400 echoes (%s, %d errors)"
          % (dict(counts), len(errs)), counts == {"eu-1": 100, "eu-2": 300} and not errs)
    r = env.shell("component_xep0225:transfer('w.localhost/eu-1', '127.0.0.1:%d')" % env.port)
    check("XEP-0051 transfer ordered from the shell is accepted by component-host",
          "1 accepted" in r, r.strip()[-200:])
    deadline, listing = time.time() + 20, ""
    while time.time() < deadline:
        listing = env.shell("component_xep0225:list()")
        if listing.count("w.localhost/eu-1") == 1 and "w.localhost: weighted, 2 instance(s)" in listing:
            break
        time.sleep(0.5)
    check("after the transfer eu-1 is bound again (one stream holds it; 2 instances)",
          listing.count("w.localhost/eu-1") == 1 and "w.localhost: weighted, 2 instance(s)" in listing,
          listing.strip()[-300:])
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try: p.wait(10)
        except subprocess.TimeoutExpired: p.kill()
    env.terminate(); env.cleanup()
    if failures:
        for name in ("eu-1", "eu-2"):
            print("----", name)
            print("".join(open(os.path.join(work, name, "out.log")).readlines()[-6:]))
    shutil.rmtree(work, ignore_errors=True)
sys.exit(1 if failures else 0)
