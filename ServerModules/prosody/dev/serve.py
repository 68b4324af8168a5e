#!/usr/bin/env python3
"""Run a throw-away Prosody with mod_component_xep0225 on loopback until Ctrl-C / SIGTERM.

Usage:  python3 ServerModules/prosody/dev/serve.py [--json] [--scale]

Prints the ports, domains, identity/secret, the c2s test account and the CA file
(the self-signed certificate) so that other tests (e.g. the Swift integration
tests) can connect. Stops Prosody by its PID and removes the temporary directory
on exit. With --json the details are printed as one JSON line. With --scale the
server also has the several-instances setup of the wire checks (identity
scale.localhost, domains with each routing algorithm; see dev/wire_scale.py).
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prosody_env as pe  # noqa: E402
import wire_scale  # noqa: E402


def main():
    scale = "--scale" in sys.argv
    env = pe.ProsodyEnv(auth_timeout=30, extra_components=wire_scale.SCALE_COMPONENTS if scale else "")
    stop = {"flag": False}

    def on_signal(*_):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        env.prepare()
        env.prosodyctl("register", pe.USER, pe.SERVER, pe.USER_PASS)
        env.start()
        info = {
            "prosody_version": env.version(),
            "host": "127.0.0.1",
            "xep0225_port": env.port,
            "c2s_port": env.c2s_port,
            "xep0114_port": env.legacy_port,
            "server_domain": pe.SERVER,
            "identity": pe.IDENTITY,
            "secret": pe.SECRET,
            "bindable": ["a.localhost", "b.localhost"],
            "not_allowed": ["c.localhost", "d.localhost"],
            "xep0114_component": pe.LEGACY,
            "xep0114_secret": pe.LEGACY_SECRET,
            "c2s_user": "%s@%s" % (pe.USER, pe.SERVER),
            "c2s_password": pe.USER_PASS,
            "cafile": env.cafile,
            "config": env.config,
            "log": os.path.join(env.dir, "prosody.log"),
            "pid": env.proc.pid,
        }
        if scale:
            # every resource of these domains may be bound (domain/resource instances);
            # rr = roundrobin, w = weighted, all, aff = affinity (default), ma = mostactive,
            # lock = roundrobin that components may not change
            info["scale_identity"] = wire_scale.SCALE_IDENTITY
            info["scale_domains"] = wire_scale.SCALE_DOMAINS
        if "--json" in sys.argv:
            print(json.dumps(info), flush=True)
        else:
            for k, v in info.items():
                print("%-18s %s" % (k, v), flush=True)
            print("Running; Ctrl-C or SIGTERM to stop.", flush=True)
        while not stop["flag"] and env.proc.poll() is None:
            time.sleep(0.2)
    finally:
        env.terminate()
        env.cleanup()


if __name__ == "__main__":
    main()
