-- Prosody for the tutorial: a port for users (c2s, 5322) and the XEP-0225 component port
-- (5370), on loopback only. A template: Prosody resolves relative paths against different
-- directories, so the paths are made absolute when the file is copied into place:
--   sed -e "s|@STATE@|$PWD/run/prosody|g" -e "s|@SDK@|$SDK|g" prosody/prosody.cfg.lua > run/prosody/prosody.cfg.lua
--   prosody --config run/prosody/prosody.cfg.lua -F

plugin_paths = { "@SDK@/ServerModules/prosody" }   -- mod_component_xep0225.lua
pidfile = "@STATE@/prosody.pid"
data_path = "@STATE@/data"
log = { { levels = { min = "info" }, to = "file", filename = "@STATE@/prosody.log" } }
certificates = "@STATE@"

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { 5322 }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
component_xep0225_ports = { 5370 }

modules_enabled = { "saslauth"; "tls"; "disco"; "ping"; "roster" }
modules_disabled = { "s2s"; "offline" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
ssl = { certificate = "@STATE@/localhost.crt"; key = "@STATE@/localhost.key" }

VirtualHost "localhost"

-- The component's SASL identity; its secret is the password in run/prosody/password.
Component "component.localhost" "component_xep0225"
    component_secret = "tutorial-only-change-me"
    component_xep0225_hostnames = { "greeter.localhost" }

-- Every hostname the identity may bind is itself a component host of the module.
Component "greeter.localhost" "component_xep0225"
